//! The template's secrets: one per function's login role, their rotation (Secrets
//! Manager's hosted alternating-users function) and the references the functions and
//! PgBouncer's task read them by.

use super::{yaml_single, yaml_str};
use crate::deploy::model::{FunctionName, KitConfig};
use std::fmt::Write as _;

fn secret_id(name: FunctionName) -> String {
    format!("{}DatabaseSecret", name.logical_id())
}

/// SAM's transform, and Secrets Manager's for `HostedRotationLambda` when rotation is on.
/// CloudFormation applies them in this order.
pub(super) fn transform(config: &KitConfig) -> String {
    if config.rotation.enabled {
        "Transform:\n  - AWS::Serverless-2016-10-31\n  - AWS::SecretsManager-2024-09-16\n"
            .to_owned()
    } else {
        "Transform: AWS::Serverless-2016-10-31\n".to_owned()
    }
}

/// The master secret the rotation function logs in with, when rotation is on.
pub(super) fn rotation_parameters(config: &KitConfig) -> String {
    if !config.rotation.enabled {
        return String::new();
    }
    "  DatabaseMasterSecretArn:
    Type: String
    AllowedPattern: ^arn:aws[a-z-]*:secretsmanager:.+
    Description: >-
      The ARN of the secret with the database's master (rds_superuser) login, e.g. the one
      RDS manages for the instance or cluster (MasterUserSecret). Secrets Manager's
      rotation function logs in with it to set the roles' new passwords; its host must be
      DatabaseHost.
"
    .to_owned()
}

pub(super) fn secrets(config: &KitConfig) -> String {
    let mut out = String::new();
    let rotation = config.rotation.enabled;
    for (name, f) in config.functions() {
        let masterarn = if rotation {
            r#","masterarn":"${DatabaseMasterSecretArn}""#
        } else {
            ""
        };
        let body = format!(
            r#"{{"engine":"postgres","username":"{}","host":"${{DatabaseHost}}","port":${{DatabasePort}},"dbname":"${{DatabaseName}}"{masterarn}}}"#,
            f.db_role
        );
        let rotation_skip = if rotation {
            String::new()
        } else {
            "          - id: CKV2_AWS_57
            comment: Rotation is off in kit.toml ([rotation] enabled = false); rotate by hand as docs/security-rotation.md describes (the functions re-read the secret when their login is refused).
"
            .to_owned()
        };
        let _ = write!(
            out,
            "  {id}:
    Type: AWS::SecretsManager::Secret
    Metadata:
      checkov:
        skip:
          - id: CKV_AWS_149
            comment: Encrypted with the AWS managed key for Secrets Manager; set KmsKeyId here if your organisation requires a customer managed key (then grant kms:Decrypt to the function, the PgBouncer task role and the rotation function).
{rotation_skip}    Properties:
      Description: Login of the {role} role for the {name} function, in the RDS shape (host and port are the database's; the function connects through PgBouncer).
      GenerateSecretString:
        SecretStringTemplate:
          Fn::Sub: {body}
        GenerateStringKey: password
        PasswordLength: 40
        ExcludePunctuation: true

",
            id = secret_id(name),
            role = f.db_role,
            body = yaml_single(&body),
        );
    }
    out
}

/// Characters the rotation function leaves out of new passwords: every ASCII punctuation
/// mark, like `ExcludePunctuation` for the first one (the passwords travel in URLs and in
/// PgBouncer's auth file).
const ROTATION_EXCLUDE_CHARACTERS: &str = r##"!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"##;

/// One `RotationSchedule` per secret, with Secrets Manager's hosted alternating-users
/// function, in the functions' subnets and its own security group (to PostgreSQL and
/// Secrets Manager only).
pub(super) fn rotation(config: &KitConfig) -> String {
    if !config.rotation.enabled {
        return String::new();
    }
    let mut out = String::from(
        "  RotationSecurityGroup:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupDescription: Secrets Manager rotation functions (to PostgreSQL and AWS APIs only)
      VpcId:
        Ref: VpcId
      SecurityGroupEgress:
        - Description: PostgreSQL (the rotation logs in as the master user to set passwords)
          IpProtocol: tcp
          FromPort:
            Ref: DatabasePort
          ToPort:
            Ref: DatabasePort
          DestinationSecurityGroupId:
            Ref: DatabaseSecurityGroupId
        - Description: AWS APIs (Secrets Manager) through a NAT gateway or VPC endpoints
          IpProtocol: tcp
          FromPort: 443
          ToPort: 443
          CidrIp: 0.0.0.0/0

  DatabaseFromRotationIngress:
    Type: AWS::EC2::SecurityGroupIngress
    Properties:
      Description: kit secrets rotation functions
      GroupId:
        Ref: DatabaseSecurityGroupId
      IpProtocol: tcp
      FromPort:
        Ref: DatabasePort
      ToPort:
        Ref: DatabasePort
      SourceSecurityGroupId:
        Fn::GetAtt: [RotationSecurityGroup, GroupId]

",
    );
    for name in FunctionName::ALL {
        let _ = write!(
            out,
            "  {id}Rotation:
    Type: AWS::SecretsManager::RotationSchedule
    DependsOn:
      - DatabaseFromRotationIngress
    Properties:
      SecretId:
        Ref: {id}
      HostedRotationLambda:
        RotationType: PostgreSQLMultiUser
        MasterSecretArn:
          Ref: DatabaseMasterSecretArn
        ExcludeCharacters: {exclude}
        VpcSubnetIds:
          Fn::Join:
            - \",\"
            - Ref: SubnetIds
        VpcSecurityGroupIds:
          Fn::GetAtt: [RotationSecurityGroup, GroupId]
      # The first rotation waits for the schedule: the roles are created after the
      # deploy, from the secrets' first passwords (docs/deploy.md).
      RotateImmediatelyOnUpdate: false
      RotationRules:
        ScheduleExpression: {schedule}

",
            id = secret_id(name),
            exclude = yaml_single(ROTATION_EXCLUDE_CHARACTERS),
            schedule = yaml_str(&config.rotation.schedule),
        );
    }
    out
}

pub(super) fn secret_refs() -> String {
    FunctionName::ALL
        .iter()
        .map(|name| format!("                  - Ref: {}\n", secret_id(*name)))
        .collect()
}

/// The secrets' ARNs as a YAML list item of `Fn::Join`'s arguments.
pub(super) fn secret_ref_list() -> String {
    let mut out = String::new();
    for (i, name) in FunctionName::ALL.iter().enumerate() {
        let lead = if i == 0 {
            "                  - - "
        } else {
            "                    - "
        };
        let _ = writeln!(out, "{lead}Ref: {}", secret_id(*name));
    }
    out
}

pub(super) fn secret_outputs() -> String {
    let mut out = String::new();
    for name in FunctionName::ALL {
        let _ = write!(
            out,
            "  {id}Arn:
    Description: The {name} function's database login (set the role's password from it).
    Value:
      Ref: {id}
",
            id = secret_id(name),
        );
    }
    out
}
