// Cloudflare list prices (Workers Paid, marginal price above the included
// amounts), as published on the pages below on the date given. The cost model
// multiplies these by operation counts measured in the benchmark.
export const PRICES = {
  asOf: "2026-11-27",
  sources: {
    workers: "https://developers.cloudflare.com/workers/platform/pricing/",
    durableObjects: "https://developers.cloudflare.com/durable-objects/platform/pricing/",
    d1: "https://developers.cloudflare.com/d1/platform/pricing/",
  },
  workerRequestsPerMillion: 0.3,
  doRequestsPerMillion: 0.15,
  /** Incoming WebSocket messages are billed as requests at 20:1. */
  doWsMessagesPerRequest: 20,
  doGbSecondsPerMillion: 12.5,
  /** Duration is billed for 128 MB per active object. */
  doMemoryGb: 0.128,
  doSqlRowsReadPerMillion: 0.001,
  doSqlRowsWrittenPerMillion: 1.0,
  d1RowsReadPerMillion: 0.001,
  d1RowsWrittenPerMillion: 1.0,
};

/**
 * Dollars per million stored messages from measured counts per message and
 * active object-seconds per message (duration is modelled, see the report).
 */
export function costPerMillion(perMsg, activeObjectSecondsPerMsg) {
  const p = PRICES;
  const items = {
    "Worker requests": perMsg.worker_requests * p.workerRequestsPerMillion,
    "DO requests (fetches, alarms)": ((perMsg.do_fetches ?? 0) + (perMsg.do_alarms ?? 0)) * p.doRequestsPerMillion,
    "DO WebSocket messages (20:1)": (perMsg.do_ws_messages / p.doWsMessagesPerRequest) * p.doRequestsPerMillion,
    "DO duration": activeObjectSecondsPerMsg * p.doMemoryGb * p.doGbSecondsPerMillion,
    "DO SQLite rows written": perMsg.sql_rows_written * p.doSqlRowsWrittenPerMillion,
    "DO alarms set (a row written each)": (perMsg.alarms_set ?? 0) * p.doSqlRowsWrittenPerMillion,
    "DO SQLite rows read": perMsg.sql_rows_read * p.doSqlRowsReadPerMillion,
    "D1 rows written": (perMsg.d1_rows_written ?? 0) * p.d1RowsWrittenPerMillion,
    "D1 rows read": (perMsg.d1_rows_read ?? 0) * p.d1RowsReadPerMillion,
  };
  const total = Object.values(items).reduce((a, b) => a + b, 0);
  return { items, total };
}
