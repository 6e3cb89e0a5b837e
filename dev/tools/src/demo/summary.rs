//! The summary a person reads at the end of the demo (stdout): what each step sent and
//! checked, with the latencies (nearest-rank percentiles, `kit_support::stats`) and the
//! ingest function's own accounting.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::SecondsFormat;
use kit_support::stats::percentile;
use kit_support::text::clip;

use super::ingest::IngestReport;
use super::log::FunctionMetrics;
use super::purge::PurgeReport;
use super::search::SearchReport;
use super::DemoArgs;

pub struct Summary<'a> {
    pub args: &'a DemoArgs,
    pub ingest: Option<&'a IngestReport>,
    pub searches: Option<&'a SearchReport>,
    pub purge: Option<&'a PurgeReport>,
    pub metrics: Option<&'a FunctionMetrics>,
    pub failed: Option<&'a anyhow::Error>,
    pub total: Duration,
}

impl Summary<'_> {
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out)
            .expect("writing to a String cannot fail");
        out
    }

    fn write(&self, out: &mut String) -> std::fmt::Result {
        let a = self.args;
        let rule = "=".repeat(78);
        writeln!(out, "\n{rule}")?;
        writeln!(out, "pgvector-lambda-kit demo: summary")?;
        writeln!(
            out,
            "namespace {:?} | {}-d unit vectors in {} clusters (seed {}) | cargo lambda watch on {}:{}",
            a.namespace, a.dimensions, a.clusters, a.seed, a.address, a.port
        )?;
        writeln!(out, "{rule}")?;
        if let Some(ingest) = self.ingest {
            self.write_ingest(out, ingest)?;
        }
        if let Some(searches) = self.searches {
            self.write_searches(out, searches)?;
        }
        if let Some(purge) = self.purge {
            self.write_purge(out, purge)?;
        }
        match self.failed {
            None => writeln!(
                out,
                "\nAll steps passed in {:.1} s.",
                self.total.as_secs_f64()
            ),
            Some(error) => writeln!(
                out,
                "\nFAILED after {:.1} s: {error:#}",
                self.total.as_secs_f64()
            ),
        }
    }

    fn write_ingest(&self, out: &mut String, i: &IngestReport) -> std::fmt::Result {
        let a = self.args;
        writeln!(out, "\nINGEST  SqsEvent JSON -> cargo lambda invoke ingest")?;
        writeln!(
            out,
            "  sent        {} records in {} batches of <= {} ({}/ingest-*.json)",
            thousands(i.sent),
            i.batches,
            a.batch_size,
            a.work_dir.display()
        )?;
        // The first invocations logged are this step's (the purge step's seeding comes later).
        let batches = self
            .metrics
            .map(|m| &m.batches[..i.batches.min(m.batches.len())])
            .filter(|b| b.len() == i.batches);
        match batches {
            Some(batches) => {
                let written: u64 = batches.iter().map(|b| b.written).sum();
                let unchanged: u64 = batches.iter().map(|b| b.unchanged).sum();
                writeln!(
                    out,
                    "  accepted    {} (the function's metrics: {} written, {} unchanged)",
                    thousands(i.accepted),
                    thousands(written as usize),
                    thousands(unchanged as usize)
                )?;
            }
            None => writeln!(out, "  accepted    {}", thousands(i.accepted))?,
        }
        writeln!(
            out,
            "  rejected    {}, returned in batchItemFailures as planted:",
            i.rejected.len()
        )?;
        for (id, why) in &i.rejected {
            let reason = self
                .metrics
                .and_then(|m| m.reasons.get(*id))
                .map_or("(reason not in the log)", String::as_str);
            writeln!(out, "      {id:<32} {reason:<18} planted: {why}")?;
        }
        let secs = i.elapsed.as_secs_f64();
        writeln!(
            out,
            "  time        {:.1} s, {:.0} records/s; per batch p50 {:.0} ms, max {:.0} ms (with the invoke CLI)",
            secs,
            i.sent as f64 / secs.max(1e-9),
            percentile(&i.batch_ms, 50.0),
            percentile(&i.batch_ms, 100.0)
        )?;
        if let Some(batches) = batches {
            let inside: Vec<f64> = batches.iter().map(|b| b.latency_ms).collect();
            writeln!(
                out,
                "              inside the function: p50 {:.0} ms, max {:.0} ms per batch",
                percentile(&inside, 50.0),
                percentile(&inside, 100.0)
            )?;
        }
        Ok(())
    }

    fn write_searches(&self, out: &mut String, searches: &SearchReport) -> std::fmt::Result {
        let a = self.args;
        writeln!(
            out,
            "\nSEARCH  HTTP -> http://{}:{}/lambda-url/search/...  [status | client ms | API took_ms]",
            a.address, a.port
        )?;
        for (n, p) in searches.probes.iter().enumerate() {
            let took = p.took_ms.map_or(String::new(), |t| format!(" | {t:.2} ms"));
            writeln!(
                out,
                "  {}. {}  [{} | {:.1} ms{took}]",
                n + 1,
                p.title,
                p.status.as_u16(),
                p.client_ms
            )?;
            if !p.request.is_empty() {
                writeln!(out, "     {}", clip(&p.request, 110))?;
            }
            for (rank, hit) in p.hits.iter().take(3).enumerate() {
                let mark = if p.expected_first.as_deref() == Some(hit.id.as_str()) {
                    "  <- source"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "       #{} {:.4}  {}  {}{mark}",
                    rank + 1,
                    hit.distance,
                    hit.id,
                    hit.metadata
                )?;
            }
            writeln!(out, "     -> {}", clip(&p.outcome, 110))?;
        }
        for l in &searches.latencies {
            writeln!(
                out,
                "  latency, {} x {}: client p50 {:.1} ms, p95 {:.1} ms | took_ms p50 {:.2}, p95 {:.2}",
                l.title,
                l.client_ms.len(),
                percentile(&l.client_ms, 50.0),
                percentile(&l.client_ms, 95.0),
                percentile(&l.took_ms, 50.0),
                percentile(&l.took_ms, 95.0)
            )?;
        }
        Ok(())
    }

    fn write_purge(&self, out: &mut String, p: &PurgeReport) -> std::fmt::Result {
        writeln!(
            out,
            "\nPURGE   cargo lambda invoke purge (namespace {:?} only)",
            self.args.namespace
        )?;
        writeln!(
            out,
            "  seeded      {} rows with created_at {} (through ingest)",
            p.seeded,
            p.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        )?;
        writeln!(
            out,
            "  dry run     would delete {} (cutoff {})",
            p.dry_run.per_namespace.values().sum::<u64>(),
            p.dry_run.cutoff
        )?;
        writeln!(
            out,
            "  scheduled   deleted {} in {} batch(es), complete: {}, skipped: {}  [{:.0} ms]",
            p.real.deleted, p.real.batches, p.real.complete, p.real.skipped, p.real_ms
        )?;
        writeln!(
            out,
            "  afterwards  a purged row answers {}, a fresh row {}",
            p.old_status.as_u16(),
            p.fresh_status.as_u16()
        )
    }
}

/// 12345 → "12,345".
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let (head, tail) = digits.split_at(digits.len() % 3);
    let groups = tail
        .as_bytes()
        .chunks(3)
        .map(|group| String::from_utf8_lossy(group));
    let mut parts: Vec<_> = (!head.is_empty())
        .then(|| head.into())
        .into_iter()
        .collect();
    parts.extend(groups);
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(2_003), "2,003");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
