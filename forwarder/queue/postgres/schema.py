"""The PostgreSQL schema of the queue: tables, server-side functions and their migrations.

Everything lives in the ``forwarder`` schema of the configured database.
Migrations run at start-up inside one transaction that holds an advisory
lock, so replicas starting together apply them once; ``schema_version``
records how far they went, and a database migrated by a newer release is
refused rather than written with an older idea of the tables.

The hot operations are PL/pgSQL functions, so each is one round trip and one
transaction however many alerts it moves:

* ``put_batch``: a group commit. It locks the ``in`` totals row first, which
  serialises puts across replicas: the capacity check sees every other
  replica's commits, and queue ids grow in commit order (oldest first is
  commit order). Refused alerts of an accepted put go to the dead letters in
  the same transaction.
* ``lease``: takes a transaction advisory lock per target, then (a fresh
  snapshot per statement, READ COMMITTED) picks due rows with ``FOR UPDATE
  SKIP LOCKED`` (a row it skips is one its old holder is settling, and its
  identity waits), skipping identities whose older state is leased or waiting
  for a retry, and taking one state per identity per batch. Two replicas
  leasing one target thus never race each other into handing out two
  states of one identity.
* ``remove``: deletes delivered rows, or moves them to the dead letters.
* ``put_states`` (version 2): a group commit with alert states, decided in
  Python (:mod:`forwarder.state`, the same for every backend) against rows
  read beforehand; under the ``in`` lock it applies the decisions only if the
  admission and the rows (by ``xmin``) are still what they were decided on.
* ``put_begin`` / ``tick_begin`` + ``state_apply``: the same, or a scheduler
  pass, deciding under the lock inside the caller's transaction: the first
  takes the ``in`` lock and returns the admission (or room) and the rows, the
  second stores the rows and queues what was decided.

Counts live in ``counters`` rows (``in`` and ``out`` grow forever, depth is
their difference; ``dead`` counts dead letters), so a metrics scrape reads a
handful of rows. ``in`` rows are written only by puts and replays, ``out``
rows only by removals: ingest and acknowledgements never wait on each other.
Every function takes its counter rows in (kind, target) order, so they cannot
deadlock.
"""

from __future__ import annotations

from typing import Any, Final

from forwarder.queue.errors import QueueMissing, QueueOpenError, QueueUnavailable

SCHEMA: Final = "forwarder"
CHANNEL: Final = "forwarder_work"
"""NOTIFY channel; the payload is the target that has new work."""

# Advisory lock namespaces (the first key of pg_advisory_*lock(int, int)).
LOCK_MIGRATE: Final = 0x46574430  # "FWD0": schema migration, key 0
LOCK_LEASE: Final = 0x46574431  # "FWD1": leasing one target, key = target_key()
LOCK_SENDER: Final = 0x46574432  # "FWD2": the replica that sends for a target

_V1: Final = """
CREATE SCHEMA IF NOT EXISTS forwarder;

CREATE TABLE forwarder.queue (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target       text             NOT NULL,
    app_key      text             NOT NULL,
    identity     text             NOT NULL,
    payload      bytea            NOT NULL,
    size         integer          NOT NULL,
    ts           bigint           NOT NULL,
    created      double precision NOT NULL,
    attempts     integer          NOT NULL DEFAULT 0,
    next_attempt double precision NOT NULL DEFAULT 0,
    lease_until  double precision NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX queue_target ON forwarder.queue (target, id);
-- Rows ever leased or attempted: what holds back newer states of an identity.
CREATE INDEX queue_held ON forwarder.queue (target, id)
    WHERE lease_until > 0 OR attempts > 0;

CREATE TABLE forwarder.dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target      text             NOT NULL,
    app_key     text             NOT NULL,
    identity    text             NOT NULL,
    payload     bytea            NOT NULL,
    size        integer          NOT NULL,
    ts          bigint           NOT NULL,
    created     double precision NOT NULL,
    attempts    integer          NOT NULL,
    reason      text             NOT NULL,
    status      integer,
    response    text,
    last_error  text,
    failed_at   double precision NOT NULL
);
CREATE INDEX dead_letters_target ON forwarder.dead_letters (target, id);
CREATE INDEX dead_letters_failed ON forwarder.dead_letters (failed_at);

CREATE TABLE forwarder.counters (
    kind    text   NOT NULL CHECK (kind IN ('in', 'out', 'dead')),
    target  text   NOT NULL,  -- '' is the total over every target
    events  bigint NOT NULL DEFAULT 0,
    bytes   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, target)
);
INSERT INTO forwarder.counters (kind, target) VALUES ('in', ''), ('out', ''), ('dead', '');

-- Adds per-target deltas to counters of one kind, total row first, targets in order.
CREATE FUNCTION forwarder.count(p_kind text, p_targets text[], p_events bigint[], p_bytes bigint[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(array_length(p_targets, 1), 0) = 0 THEN
        RETURN;
    END IF;
    UPDATE forwarder.counters
       SET events = events + (SELECT sum(e) FROM unnest(p_events) e),
           bytes = bytes + (SELECT sum(b) FROM unnest(p_bytes) b)
     WHERE kind = p_kind AND target = '';
    INSERT INTO forwarder.counters AS c (kind, target, events, bytes)
    SELECT p_kind, u.t, u.e, u.b FROM unnest(p_targets, p_events, p_bytes) AS u(t, e, b)
     ORDER BY u.t
    ON CONFLICT (kind, target) DO UPDATE
       SET events = c.events + excluded.events, bytes = c.bytes + excluded.bytes;
END $$;

-- One group commit: rows of several puts; a put whose rows do not fit is refused whole.
CREATE FUNCTION forwarder.put_batch(
    p_target text[], p_app_key text[], p_identity text[], p_payload bytea[], p_ts bigint[],
    p_put int[],
    p_put_events bigint[], p_put_bytes bigint[],
    d_target text[], d_app_key text[], d_identity text[], d_payload bytea[], d_ts bigint[],
    d_reason text[], d_put int[],
    p_now double precision, p_max_events bigint, p_max_bytes bigint
) RETURNS boolean[] LANGUAGE plpgsql AS $$
DECLARE
    used_events bigint;
    used_bytes bigint;
    out_events bigint;
    out_bytes bigint;
    ok boolean[] := '{}';
    any_ok boolean := false;
    i int;
    tg text[]; ev bigint[]; bs bigint[];
BEGIN
    SELECT events, bytes INTO used_events, used_bytes
      FROM forwarder.counters WHERE kind = 'in' AND target = '' FOR UPDATE;
    SELECT events, bytes INTO out_events, out_bytes
      FROM forwarder.counters WHERE kind = 'out' AND target = '';
    -- "out" read without a lock can only lag: the check errs on the safe side.
    used_events := used_events - out_events;
    used_bytes := used_bytes - out_bytes;
    FOR i IN 1 .. coalesce(array_length(p_put_events, 1), 0) LOOP
        IF used_events + p_put_events[i] <= p_max_events
           AND used_bytes + p_put_bytes[i] <= p_max_bytes THEN
            ok := ok || true;
            any_ok := true;
            used_events := used_events + p_put_events[i];
            used_bytes := used_bytes + p_put_bytes[i];
        ELSE
            ok := ok || false;
        END IF;
    END LOOP;
    IF NOT any_ok THEN
        RETURN ok;
    END IF;
    INSERT INTO forwarder.queue (target, app_key, identity, payload, size, ts, created,
                                 next_attempt)
    SELECT u.t, u.k, u.i, u.p, length(u.p), u.ts, p_now, p_now
      FROM unnest(p_target, p_app_key, p_identity, p_payload, p_ts, p_put)
           WITH ORDINALITY AS u(t, k, i, p, ts, put, ord)
     WHERE ok[u.put]
     ORDER BY u.ord;
    SELECT array_agg(s.t ORDER BY s.t), array_agg(s.n ORDER BY s.t), array_agg(s.b ORDER BY s.t)
      INTO tg, ev, bs
      FROM (SELECT u.t, count(*) AS n, sum(length(u.p)) AS b
              FROM unnest(p_target, p_payload, p_put) AS u(t, p, put)
             WHERE ok[u.put] GROUP BY u.t) s;
    PERFORM forwarder.count('in', tg, ev, bs);
    PERFORM pg_notify('forwarder_work', t) FROM unnest(tg) t;
    IF coalesce(array_length(d_target, 1), 0) > 0 THEN
        INSERT INTO forwarder.dead_letters (target, app_key, identity, payload, size, ts, created,
                                            attempts, reason, failed_at)
        SELECT u.t, u.k, u.i, u.p, length(u.p), u.ts, p_now, 0, u.r, p_now
          FROM unnest(d_target, d_app_key, d_identity, d_payload, d_ts, d_reason, d_put)
               WITH ORDINALITY AS u(t, k, i, p, ts, r, put, ord)
         WHERE ok[u.put]
         ORDER BY u.ord;
        SELECT array_agg(s.t ORDER BY s.t), array_agg(s.n ORDER BY s.t),
               array_agg(s.b ORDER BY s.t)
          INTO tg, ev, bs
          FROM (SELECT u.t, count(*) AS n, sum(length(u.p)) AS b
                  FROM unnest(d_target, d_payload, d_put) AS u(t, p, put)
                 WHERE ok[u.put] GROUP BY u.t) s;
        PERFORM forwarder.count('dead', tg, ev, bs);
    END IF;
    RETURN ok;
END $$;

-- Lease up to p_limit due rows of one target and one app key, oldest first,
-- never a newer state of an identity whose older state is leased or waiting.
-- A row with id NULL carries only next_due: when a waiting retry becomes due.
CREATE FUNCTION forwarder.lease(
    p_target text, p_lock int, p_limit int, p_now double precision, p_until double precision
) RETURNS TABLE (
    id bigint, app_key text, identity text, payload bytea, ts bigint,
    created double precision, attempts integer, next_due double precision
) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1180124209, p_lock);
    RETURN QUERY
    WITH cand AS (
        SELECT q.id, q.app_key, q.identity, q.next_attempt
          FROM forwarder.queue q
         WHERE q.target = p_target AND q.lease_until <= p_now
         ORDER BY q.id
         LIMIT p_limit * 4
           FOR UPDATE SKIP LOCKED
    ), held AS (
        SELECT h.app_key, h.identity, min(h.id) AS first
          FROM forwarder.queue h
         WHERE h.target = p_target AND (
                 ((h.lease_until > 0 OR h.attempts > 0)
                  AND (h.lease_until > p_now OR h.next_attempt > p_now))
                 -- A row SKIP LOCKED passed over: its old holder is settling it (an
                 -- expired lease being retried or acknowledged). Its identity waits
                 -- too, or a newer state would overtake it.
              OR (h.lease_until <= p_now AND h.id < (SELECT max(c.id) FROM cand c)
                  AND NOT EXISTS (SELECT 1 FROM cand c WHERE c.id = h.id)))
         GROUP BY h.app_key, h.identity
    ), oldest AS (
        -- One state per identity: the oldest. A batch sent again after a lost
        -- ack then never brings an older state after a newer one; and if the
        -- oldest is waiting for its retry, the identity waits whole.
        SELECT DISTINCT ON (c.app_key, c.identity) c.id, c.app_key, c.identity, c.next_attempt
          FROM cand c
         ORDER BY c.app_key, c.identity, c.id
    ), ready AS (
        SELECT o.id, o.app_key
          FROM oldest o LEFT JOIN held h ON h.app_key = o.app_key AND h.identity = o.identity
         WHERE o.next_attempt <= p_now AND (h.first IS NULL OR h.first > o.id)
    ), chosen AS (
        SELECT r.id FROM ready r
         WHERE r.app_key = (SELECT r2.app_key FROM ready r2 ORDER BY r2.id LIMIT 1)
         ORDER BY r.id
         LIMIT p_limit
    )
    UPDATE forwarder.queue q SET lease_until = p_until
      FROM chosen WHERE q.id = chosen.id
    RETURNING q.id, q.app_key, q.identity, q.payload, q.ts, q.created, q.attempts,
              NULL::double precision;
    RETURN QUERY
    SELECT NULL::bigint, NULL::text, NULL::text, NULL::bytea, NULL::bigint,
           NULL::double precision, NULL::integer, min(q.next_attempt)
      FROM forwarder.queue q
     WHERE q.target = p_target AND q.attempts > 0 AND q.lease_until <= p_now
       AND q.next_attempt > p_now
    HAVING min(q.next_attempt) IS NOT NULL;
END $$;

-- Delivered (p_reason NULL) or dead-lettered: the rows leave the queue in one transaction.
CREATE FUNCTION forwarder.remove(
    p_ids bigint[], p_reason text, p_status int, p_response text, p_error text,
    p_now double precision
) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    tg text[]; ev bigint[]; bs bigint[];
    n int;
BEGIN
    WITH d AS (
        DELETE FROM forwarder.queue WHERE id = ANY(p_ids)
        RETURNING id, target, app_key, identity, payload, size, ts, created, attempts
    ), dl AS (
        INSERT INTO forwarder.dead_letters (target, app_key, identity, payload, size, ts, created,
                                            attempts, reason, status, response, last_error,
                                            failed_at)
        SELECT d.target, d.app_key, d.identity, d.payload, d.size, d.ts, d.created,
               d.attempts + 1, p_reason, p_status, p_response, p_error, p_now
          FROM d WHERE p_reason IS NOT NULL ORDER BY d.id
    )
    SELECT array_agg(s.t ORDER BY s.t), array_agg(s.n ORDER BY s.t), array_agg(s.b ORDER BY s.t),
           coalesce(sum(s.n), 0)
      INTO tg, ev, bs, n
      FROM (SELECT d.target AS t, count(*) AS n, sum(d.size) AS b FROM d GROUP BY d.target) s;
    PERFORM forwarder.count('out', tg, ev, bs);
    IF p_reason IS NOT NULL THEN
        PERFORM forwarder.count('dead', tg, ev, bs);
    END IF;
    RETURN n;
END $$;

-- Dead letters back into the queue, afresh: no attempts, due now.
-- At most p_limit dead letters a call, oldest first: a replay of many is several
-- short transactions, so the "in" lock never stalls the ingest for long.
CREATE FUNCTION forwarder.replay(
    p_ids bigint[], p_target text, p_now double precision, p_limit int
) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    tg text[]; ev bigint[]; bs bigint[]; neg bigint[]; nb bigint[];
    n int;
BEGIN
    -- The "in" lock first, as puts take it: ids stay in commit order.
    PERFORM 1 FROM forwarder.counters WHERE kind = 'in' AND target = '' FOR UPDATE;
    WITH d AS (
        DELETE FROM forwarder.dead_letters
         WHERE id IN (SELECT x.id FROM forwarder.dead_letters x
                       WHERE (p_ids IS NULL OR x.id = ANY(p_ids))
                         AND (p_target IS NULL OR x.target = p_target)
                       ORDER BY x.id LIMIT p_limit)
        RETURNING id, target, app_key, identity, payload, size, ts
    ), ins AS (
        INSERT INTO forwarder.queue (target, app_key, identity, payload, size, ts, created,
                                     next_attempt)
        SELECT d.target, d.app_key, d.identity, d.payload, d.size, d.ts, p_now, p_now
          FROM d ORDER BY d.id
    )
    SELECT array_agg(s.t ORDER BY s.t), array_agg(s.n ORDER BY s.t), array_agg(s.b ORDER BY s.t),
           array_agg(-s.n ORDER BY s.t), array_agg(-s.b ORDER BY s.t), coalesce(sum(s.n), 0)
      INTO tg, ev, bs, neg, nb, n
      FROM (SELECT d.target AS t, count(*) AS n, sum(d.size) AS b FROM d GROUP BY d.target) s;
    PERFORM forwarder.count('in', tg, ev, bs);
    PERFORM forwarder.count('dead', tg, neg, nb);
    PERFORM pg_notify('forwarder_work', t) FROM unnest(tg) t;
    RETURN n;
END $$;

-- Delete dead letters by id, or those that failed before p_before.
CREATE FUNCTION forwarder.purge(p_ids bigint[], p_before double precision)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    tg text[]; neg bigint[]; nb bigint[];
    n int;
BEGIN
    WITH d AS (
        DELETE FROM forwarder.dead_letters
         WHERE (p_ids IS NOT NULL AND id = ANY(p_ids))
            OR (p_ids IS NULL AND failed_at < p_before)
        RETURNING target, size
    )
    SELECT array_agg(s.t ORDER BY s.t), array_agg(-s.n ORDER BY s.t),
           array_agg(-s.b ORDER BY s.t), coalesce(sum(s.n), 0)
      INTO tg, neg, nb, n
      FROM (SELECT d.target AS t, count(*) AS n, sum(d.size) AS b FROM d GROUP BY d.target) s;
    PERFORM forwarder.count('dead', tg, neg, nb);
    RETURN n;
END $$;

-- What `forwarder queue migrate` has imported from each SQLite file: the last
-- chunk, up to id `upto`, and a digest of its rows. A run after a crash between
-- the import and the delete finds that chunk still in the file and skips it;
-- another file at the same path does not match the digest and is imported.
CREATE TABLE forwarder.imports (
    source  text   NOT NULL,
    kind    text   NOT NULL CHECK (kind IN ('queue', 'dead_letters')),
    upto    bigint NOT NULL,
    digest  text   NOT NULL,
    PRIMARY KEY (source, kind)
);

CREATE TABLE forwarder.schema_version (version integer NOT NULL);
INSERT INTO forwarder.schema_version VALUES (0);
"""

_V2: Final = """
-- One row per identity (contract invariant 5; forwarder.state.record.AlertState).
-- Times are Unix seconds; ``clock``, ``since``, ``queued_at`` and ``transitions``
-- are the identity's own clock (see forwarder.state.record).
CREATE TABLE forwarder.alert_states (
    target         text               NOT NULL,
    app_key        text               NOT NULL,
    identity       text               NOT NULL,
    status         text               NOT NULL,
    dedup          text               NOT NULL,
    payload        bytea              NOT NULL,
    ts             bigint             NOT NULL,
    first_seen     double precision   NOT NULL,
    seen           double precision   NOT NULL,
    clock          double precision   NOT NULL,
    since          double precision   NOT NULL,
    queued_status  text,
    queued_dedup   text,
    queued_at      double precision,
    sent           double precision,
    transitions    double precision[] NOT NULL DEFAULT '{}',
    flapping       boolean            NOT NULL DEFAULT false,
    suppressed     bigint             NOT NULL DEFAULT 0,
    resolve_after  double precision   NOT NULL DEFAULT 0,
    hold           double precision   NOT NULL DEFAULT 0,
    retention      double precision   NOT NULL DEFAULT 0,
    due            double precision,
    PRIMARY KEY (target, app_key, identity)
);
-- The scheduler's claim: due rows, earliest first.
CREATE INDEX alert_states_due ON forwarder.alert_states (due) WHERE due IS NOT NULL;
-- Per-target gauges count these partial indexes only (non-ok and flapping rows,
-- few beside the resolved ones); listings of them read them newest seen first.
CREATE INDEX alert_states_open ON forwarder.alert_states (target, seen) WHERE status <> 'ok';
CREATE INDEX alert_states_flapping ON forwarder.alert_states (target, seen) WHERE flapping;

-- The first half of a group commit with alert states, inside the caller's
-- transaction: lock the "in" totals row (which serialises every put and every
-- scheduler pass across replicas, so no two decide against one old row), admit
-- each put whole or refuse it as put_batch does, and return the admission (the
-- first row) and then the stored rows of the keys asked for. Each statement of
-- a volatile function takes a fresh snapshot (READ COMMITTED), so the rows are
-- read after the lock is held and include every commit before it.
CREATE FUNCTION forwarder.put_begin(
    p_put_events bigint[], p_put_bytes bigint[], p_max_events bigint, p_max_bytes bigint,
    k_target text[], k_app_key text[], k_identity text[]
) RETURNS TABLE (o_ok boolean[], o_row forwarder.alert_states) LANGUAGE plpgsql AS $$
DECLARE
    used_events bigint;
    used_bytes bigint;
    out_events bigint;
    out_bytes bigint;
    ok boolean[] := '{}';
    any_ok boolean := false;
    n int;
BEGIN
    -- The lock is held across the caller's round trips: a caller that stalls
    -- (stopped, starved) must not stall every replica's ingest for longer.
    PERFORM set_config('idle_in_transaction_session_timeout', '10s', true);
    SELECT c.events, c.bytes INTO used_events, used_bytes
      FROM forwarder.counters c WHERE c.kind = 'in' AND c.target = '' FOR UPDATE;
    SELECT c.events, c.bytes INTO out_events, out_bytes
      FROM forwarder.counters c WHERE c.kind = 'out' AND c.target = '';
    used_events := used_events - out_events;
    used_bytes := used_bytes - out_bytes;
    FOR n IN 1 .. coalesce(array_length(p_put_events, 1), 0) LOOP
        IF used_events + p_put_events[n] <= p_max_events
           AND used_bytes + p_put_bytes[n] <= p_max_bytes THEN
            ok := ok || true;
            any_ok := true;
            used_events := used_events + p_put_events[n];
            used_bytes := used_bytes + p_put_bytes[n];
        ELSE
            ok := ok || false;
        END IF;
    END LOOP;
    RETURN QUERY SELECT ok, NULL::forwarder.alert_states;
    IF any_ok THEN
        RETURN QUERY
        SELECT NULL::boolean[], s
          FROM forwarder.alert_states s
          JOIN unnest(k_target, k_app_key, k_identity) AS u(t, k, i)
            ON s.target = u.t AND s.app_key = u.k AND s.identity = u.i;
    END IF;
END $$;

-- A group commit with alert states in one call, optimistically: the caller
-- read the rows (and their xmin, which every write changes) without a lock and
-- decided as if the puts p_assume marks were admitted. Under the "in" lock,
-- this admits the puts as put_batch would; when that differs from p_assume
-- (o_stale NULL), or a row changed or appeared since it was read (o_stale
-- true), nothing is written and the caller decides again; otherwise the
-- decisions are applied (o_stale false, o_version the rows' new xmin). The lock
-- is held only for this call.
CREATE FUNCTION forwarder.put_states(
    p_assume boolean[], p_put_events bigint[], p_put_bytes bigint[], p_max_events bigint,
    p_max_bytes bigint, k_target text[], k_app_key text[], k_identity text[], k_xmin text[],
    s_rows json, s_payload bytea[],
    x_target text[], x_app_key text[], x_identity text[],
    p_target text[], p_app_key text[], p_identity text[], p_payload bytea[], p_ts bigint[],
    d_target text[], d_app_key text[], d_identity text[], d_payload bytea[], d_ts bigint[],
    d_reason text[],
    p_now double precision
) RETURNS TABLE (o_ok boolean[], o_stale boolean, o_version text) LANGUAGE plpgsql AS $$
DECLARE
    used_events bigint;
    used_bytes bigint;
    out_events bigint;
    out_bytes bigint;
    ok boolean[] := '{}';
    n int;
BEGIN
    SELECT c.events, c.bytes INTO used_events, used_bytes
      FROM forwarder.counters c WHERE c.kind = 'in' AND c.target = '' FOR UPDATE;
    SELECT c.events, c.bytes INTO out_events, out_bytes
      FROM forwarder.counters c WHERE c.kind = 'out' AND c.target = '';
    used_events := used_events - out_events;
    used_bytes := used_bytes - out_bytes;
    FOR n IN 1 .. coalesce(array_length(p_put_events, 1), 0) LOOP
        IF used_events + p_put_events[n] <= p_max_events
           AND used_bytes + p_put_bytes[n] <= p_max_bytes THEN
            ok := ok || true;
            used_events := used_events + p_put_events[n];
            used_bytes := used_bytes + p_put_bytes[n];
        ELSE
            ok := ok || false;
        END IF;
    END LOOP;
    IF ok IS DISTINCT FROM p_assume THEN
        RETURN QUERY SELECT ok, NULL::boolean, NULL::text;
        RETURN;
    END IF;
    -- A fresh snapshot (this statement's), taken after the lock was granted.
    IF EXISTS (
        SELECT 1
          FROM unnest(k_target, k_app_key, k_identity, k_xmin) AS u(t, k, i, x)
          LEFT JOIN forwarder.alert_states s
            ON s.target = u.t AND s.app_key = u.k AND s.identity = u.i
         WHERE s.xmin::text IS DISTINCT FROM u.x
    ) THEN
        RETURN QUERY SELECT ok, true, NULL::text;
        RETURN;
    END IF;
    PERFORM forwarder.state_apply(
        s_rows, s_payload, x_target, x_app_key, x_identity, p_target, p_app_key, p_identity,
        p_payload, p_ts, d_target, d_app_key, d_identity, d_payload, d_ts, d_reason, p_now);
    -- Every row written has this transaction's id as its xmin (no subtransactions
    -- here), in xid's own 32-bit form: the version the caller may cache them at.
    RETURN QUERY SELECT ok, false, (txid_current() % 4294967296)::text;
END $$;

-- The first half of a scheduler pass, inside the caller's transaction: the
-- "in" lock as put_begin takes it, then the room left under the bounds (the
-- first row), then up to p_limit due rows, earliest first, each locked so that
-- no other pass claims it.
CREATE FUNCTION forwarder.tick_begin(p_now double precision, p_limit int)
RETURNS TABLE (o_events bigint, o_bytes bigint, o_row forwarder.alert_states)
LANGUAGE plpgsql AS $$
DECLARE
    in_events bigint; in_bytes bigint; out_events bigint; out_bytes bigint;
BEGIN
    PERFORM set_config('idle_in_transaction_session_timeout', '10s', true);  -- as put_begin
    SELECT c.events, c.bytes INTO in_events, in_bytes
      FROM forwarder.counters c WHERE c.kind = 'in' AND c.target = '' FOR UPDATE;
    SELECT c.events, c.bytes INTO out_events, out_bytes
      FROM forwarder.counters c WHERE c.kind = 'out' AND c.target = '';
    RETURN QUERY SELECT in_events - out_events, in_bytes - out_bytes,
                        NULL::forwarder.alert_states;
    RETURN QUERY
    SELECT NULL::bigint, NULL::bigint, s
      FROM forwarder.alert_states s
     WHERE s.due <= p_now
     ORDER BY s.due
     LIMIT p_limit
       FOR UPDATE SKIP LOCKED;
END $$;

-- The second half of either, in the same transaction (the "in" lock still
-- held): store (s_rows) and delete (x_*) state rows, queue alerts (p_*) and
-- dead-letter refused ones (d_*), keep the counters, wake the targets.
CREATE FUNCTION forwarder.state_apply(
    s_rows json, s_payload bytea[],
    x_target text[], x_app_key text[], x_identity text[],
    p_target text[], p_app_key text[], p_identity text[], p_payload bytea[], p_ts bigint[],
    d_target text[], d_app_key text[], d_identity text[], d_payload bytea[], d_ts bigint[],
    d_reason text[],
    p_now double precision
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    tg text[]; ev bigint[]; bs bigint[];
BEGIN
    -- The rows come as one JSON array of objects named as the columns, but for
    -- their payloads, which come as a bytea array in the same order (binary, not
    -- hex in JSON): two values to encode and parse, not 22 arrays.
    IF s_rows IS NOT NULL THEN
        INSERT INTO forwarder.alert_states
        SELECT r.target, r.app_key, r.identity, r.status, r.dedup, r.pay, r.ts, r.first_seen,
               r.seen, r.clock, r.since, r.queued_status, r.queued_dedup, r.queued_at, r.sent,
               r.transitions, r.flapping, r.suppressed, r.resolve_after, r.hold, r.retention,
               r.due
          FROM ROWS FROM (json_populate_recordset(NULL::forwarder.alert_states, s_rows),
                          unnest(s_payload))
               AS r(target, app_key, identity, status, dedup, payload, ts, first_seen, seen,
                    clock, since, queued_status, queued_dedup, queued_at, sent, transitions,
                    flapping, suppressed, resolve_after, hold, retention, due, pay)
        ON CONFLICT (target, app_key, identity) DO UPDATE SET
            status = excluded.status, dedup = excluded.dedup, payload = excluded.payload,
            ts = excluded.ts, first_seen = excluded.first_seen, seen = excluded.seen,
            clock = excluded.clock, since = excluded.since,
            queued_status = excluded.queued_status, queued_dedup = excluded.queued_dedup,
            queued_at = excluded.queued_at, sent = excluded.sent,
            transitions = excluded.transitions, flapping = excluded.flapping,
            suppressed = excluded.suppressed, resolve_after = excluded.resolve_after,
            hold = excluded.hold, retention = excluded.retention, due = excluded.due;
    END IF;
    IF coalesce(array_length(x_target, 1), 0) > 0 THEN
        DELETE FROM forwarder.alert_states s
         USING unnest(x_target, x_app_key, x_identity) AS u(t, k, i)
         WHERE s.target = u.t AND s.app_key = u.k AND s.identity = u.i;
    END IF;
    IF coalesce(array_length(p_target, 1), 0) > 0 THEN
        INSERT INTO forwarder.queue (target, app_key, identity, payload, size, ts, created,
                                     next_attempt)
        SELECT u.t, u.k, u.i, u.p, length(u.p), u.ts, p_now, p_now
          FROM unnest(p_target, p_app_key, p_identity, p_payload, p_ts)
               WITH ORDINALITY AS u(t, k, i, p, ts, ord)
         ORDER BY u.ord;
        SELECT array_agg(s.t ORDER BY s.t), array_agg(s.n ORDER BY s.t),
               array_agg(s.b ORDER BY s.t)
          INTO tg, ev, bs
          FROM (SELECT u.t, count(*) AS n, sum(length(u.p)) AS b
                  FROM unnest(p_target, p_payload) AS u(t, p) GROUP BY u.t) s;
        PERFORM forwarder.count('in', tg, ev, bs);
        PERFORM pg_notify('forwarder_work', t) FROM unnest(tg) t;
    END IF;
    IF coalesce(array_length(d_target, 1), 0) > 0 THEN
        INSERT INTO forwarder.dead_letters (target, app_key, identity, payload, size, ts, created,
                                            attempts, reason, failed_at)
        SELECT u.t, u.k, u.i, u.p, length(u.p), u.ts, p_now, 0, u.r, p_now
          FROM unnest(d_target, d_app_key, d_identity, d_payload, d_ts, d_reason)
               WITH ORDINALITY AS u(t, k, i, p, ts, r, ord)
         ORDER BY u.ord;
        SELECT array_agg(s.t ORDER BY s.t), array_agg(s.n ORDER BY s.t),
               array_agg(s.b ORDER BY s.t)
          INTO tg, ev, bs
          FROM (SELECT u.t, count(*) AS n, sum(length(u.p)) AS b
                  FROM unnest(d_target, d_payload) AS u(t, p) GROUP BY u.t) s;
        PERFORM forwarder.count('dead', tg, ev, bs);
    END IF;
END $$;
"""

MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2)
"""``MIGRATIONS[n]`` takes a database from version ``n`` to ``n + 1``."""

VERSION: Final = len(MIGRATIONS)
"""The schema version this release writes."""


async def migrate(conn: Any, *, admin: bool, where: str) -> int:
    """Bring the schema to :data:`VERSION` under an advisory lock (or check it, ``admin``).

    One transaction holds ``pg_advisory_xact_lock``, so replicas starting at
    once apply each migration exactly once; DDL is transactional, so a failed
    migration leaves the previous version intact. Returns the version in use:
    :data:`VERSION`, or for ``admin`` an older one as found (the admin
    commands never change the schema under running replicas of an older
    release; what needs a newer table says so, see :func:`require`).
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", LOCK_MIGRATE)
        exists = await conn.fetchval("SELECT to_regclass('forwarder.schema_version') IS NOT NULL")
        version = int(await conn.fetchval("SELECT version FROM forwarder.schema_version")) if (
            exists
        ) else 0  # fmt: skip
        if version > VERSION:
            raise QueueOpenError(
                f"the queue schema at {where} is version {version}, newer than this forwarder"
                f" understands ({VERSION}); upgrade forwarder"
            )
        if version == VERSION:
            return version
        if admin:
            if version > 0:
                return version
            raise QueueMissing(
                f"no forwarder queue in {where}: forwarder run creates it when it first starts"
            )
        for step in range(version, VERSION):
            await conn.execute(MIGRATIONS[step])
            await conn.execute("UPDATE forwarder.schema_version SET version = $1", step + 1)
        return VERSION


STATES_VERSION: Final = 2
"""The first schema version with the alert-state table."""


def require(version: int, needed: int, what: str, where: str) -> None:
    """Fail with :class:`QueueUnavailable` when ``version`` predates ``what`` (an admin open)."""
    if version < needed:
        raise QueueUnavailable(
            f"the queue schema at {where} is version {version}; {what} needs version {needed}:"
            " start forwarder run of this release once to upgrade it"
        )
