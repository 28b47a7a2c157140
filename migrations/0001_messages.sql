-- History: one row per entry of a user's log, archived in batches by that
-- user's Durable Object. Rows carry their conversation id so history can later
-- be spread over several databases.
CREATE TABLE IF NOT EXISTS messages (
  owner    TEXT    NOT NULL,  -- whose log the row belongs to
  seq      INTEGER NOT NULL,  -- place in the owner's log (history cursor)
  id       TEXT    NOT NULL,  -- message id, the same in sender's and recipient's rows
  conv     TEXT    NOT NULL,  -- 'u:<a>|<b>' for a pair of users, 's:<owner>' for system messages
  peer     TEXT,              -- the other user of a chat
  kind     INTEGER NOT NULL,  -- 1 received chat, 2 sent chat, 3 system message
  time     INTEGER NOT NULL,  -- server time, ms since the epoch
  body     TEXT    NOT NULL,  -- the JSON object as delivered
  is_send  INTEGER NOT NULL,  -- 1 written to a socket, 2 still queued
  peer_seq INTEGER,           -- sent chat: the recipient's row (owner = peer, seq = peer_seq)
  PRIMARY KEY (owner, seq)
) WITHOUT ROWID;

-- Pages of one conversation (peer=...) and of the system channel.
CREATE INDEX IF NOT EXISTS messages_conv ON messages (owner, conv, seq);
