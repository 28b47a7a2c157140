-- History by conversation (from 0002 on): one row per message in time
-- partitions, each its own table (partition.sql.in, created by the history
-- writers as time reaches it), so retention drops whole tables. This table
-- lists the partitions of this database for readers and for retention.
-- Applied to every history shard (DB_0 ... DB_<N-1>); 0001's per-owner
-- `messages` table is what deployments before 0002 wrote (read by the copy
-- job, POST /api/history/upgrade).
CREATE TABLE IF NOT EXISTS partitions (
  tbl       TEXT    NOT NULL PRIMARY KEY,  -- 'history_<first_day>'
  first_day INTEGER NOT NULL,              -- days since the epoch, first day it holds
  end_day   INTEGER NOT NULL               -- first day it no longer holds
) WITHOUT ROWID;
