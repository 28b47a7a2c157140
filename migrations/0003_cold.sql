-- Cold history: how far the export of a partition to R2 got (the last
-- conversation exported; NULL before it starts). A partition wholly older
-- than HISTORY_HOT_DAYS is exported, then its table is dropped.
ALTER TABLE partitions ADD COLUMN exported TEXT;
