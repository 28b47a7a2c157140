//! The fleet's counters: what this isolate counted since its last flush,
//! written to the Workers Analytics Engine dataset bound as `METRICS` (one
//! data point per set, at most every `METRICS_FLUSH_S`). Without the binding
//! (local runs, a deployment that left it out) nothing is written.

use wasm_bindgen::prelude::*;
use worker::js_sys::{Array, Object, Reflect};
use worker::Env;

use super::{log, now_ms};
use crate::logs::{Line, RequestId};
use crate::metrics;

/// The binding's name in `wrangler.toml`.
pub const BINDING: &str = "METRICS";

#[wasm_bindgen]
extern "C" {
    /// An Analytics Engine dataset, seen as the plain JS object it is.
    type Dataset;
    #[wasm_bindgen(method, catch, js_name = writeDataPoint)]
    fn write_data_point(this: &Dataset, point: &Object) -> Result<(), JsValue>;
}

/// Writes the data points that are due. Called in every hook's preamble, so
/// an isolate that serves anything flushes at most one interval late.
pub fn flush(env: &Env) {
    let every_ms = super::limits(env).map_or(metrics::DEFAULT_FLUSH_MS, |l| l.metrics_flush_ms);
    let points = metrics::due(now_ms(), every_ms);
    if points.is_empty() {
        return;
    }
    let Ok(dataset) = Reflect::get(env, &BINDING.into()) else { return };
    if dataset.is_undefined() {
        return;
    }
    let dataset: Dataset = dataset.unchecked_into();
    for point in points {
        if let Err(e) = write(&dataset, &point) {
            let e = e.as_string().unwrap_or_else(|| "writeDataPoint threw".into());
            log(Line::error("metrics_write_failed", RequestId(super::random_u64()))
                .word("set", point.set.name())
                .err(&e));
        }
    }
}

fn write(dataset: &Dataset, point: &metrics::Point) -> Result<(), JsValue> {
    let name: JsValue = point.set.name().into();
    let doubles: Array = point.doubles.iter().map(|&d| JsValue::from_f64(d)).collect();
    let obj = Object::new();
    Reflect::set(&obj, &"indexes".into(), &Array::of1(&name))?;
    Reflect::set(&obj, &"blobs".into(), &Array::of1(&name))?;
    Reflect::set(&obj, &"doubles".into(), &doubles)?;
    dataset.write_data_point(&obj)
}
