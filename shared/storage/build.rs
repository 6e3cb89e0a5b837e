// `sqlx::migrate!` embeds migrations/ at compile time: rebuild when a file there changes
// or is added (cargo does not watch the folder otherwise).
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
