//! The R2 side of cold history (`COLD` bucket; without it there is no cold
//! tier): a shard's old partitions exported conversation by conversation,
//! and a conversation's exported objects read back for a page. What goes
//! where is decided in [`crate::cold`].

use worker::{Bucket, Env};

use super::d1;
use crate::archive::Partitioning;
use crate::cold::{key, prefix};
use crate::metrics::{incr, Counter};

const BINDING: &str = "COLD";

/// The bucket, if the deployment binds one.
pub fn bucket(env: &Env) -> Option<Bucket> {
    env.bucket(BINDING).ok()
}

/// Moves every partition of `shard` older than the hot window to R2, then
/// drops its table. Resumes where an earlier run stopped.
pub async fn export(env: &Env, shard: u32, p: &Partitioning, now_ms: u64) -> worker::Result<()> {
    let (Some(bucket), Some(before)) = (bucket(env), p.cold_before(now_ms)) else { return Ok(()) };
    for part in d1::to_export(env, shard, before).await? {
        let mut after = part.exported.clone();
        loop {
            let convs = d1::export_step(env, shard, &part.tbl, &after).await?;
            let Some(last) = convs.last().map(|c| c.conv.clone()) else { break };
            for c in convs {
                bucket.put(key(&c.conv, part.first_day), c.rows).execute().await?;
                incr(Counter::ColdObjectsWritten);
            }
            d1::exported(env, shard, &part.tbl, &last).await?;
            after = last;
        }
        d1::drop_partition(env, shard, &part.tbl).await?;
        incr(Counter::PartitionsExported);
    }
    Ok(())
}

/// Every exported object of a conversation (JSON lines), oldest first: at
/// most 1,000 partitions (83 years of 30-day partitions), one list call.
pub async fn objects(bucket: &Bucket, conv: &str) -> worker::Result<Vec<String>> {
    let listed = bucket.list().prefix(prefix(conv)).execute().await?;
    let mut out = Vec::new();
    for object in listed.objects() {
        if let Some(object) = bucket.get(object.key()).execute().await? {
            if let Some(body) = object.body() {
                out.push(body.text().await?);
                incr(Counter::ColdObjectsRead);
            }
        }
    }
    Ok(out)
}
