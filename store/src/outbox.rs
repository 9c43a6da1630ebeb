//! The effects every terminal write carries in its own statement: the
//! webhook deliveries of the jobs' events (the outbox) and their groups'
//! progress. Each statement that moves jobs to a terminal state (the
//! insert of a cache hit or a refused firing, the worker's finish and its
//! followers, the release round's cache answers, the tenant's and the
//! operator's cancel) ends with [`terminal_effects`] over the rows it moved,
//! so a job never reaches a terminal state without its event and its
//! group's count, nor the other way round: one statement, one commit.
//!
//! The events are written as one narrow row per statement
//! (`webhook_events`, the ids of the jobs it ended); the delivery loop turns
//! them into deliveries ([`fan_out`]) afterwards, in one statement that
//! deletes the rows and writes their deliveries. The cost
//! when nobody listens is one probe of `webhook_endpoints` per job and one
//! `group_progress` row per group per statement.

use crate::edge::TERMINAL_STATES as TERMINAL;

/// The columns a terminal statement's source CTE must return, by these
/// names: the job's identity, group and what its event says.
pub(crate) const EFFECT_COLUMNS: &str = "id, tenant_id, state, group_id, model, result, error, credits, cache_hit, \
    user_id, metadata, created_at, started_at, finished_at, attempts";

/// [`EFFECT_COLUMNS`] qualified by a table alias, for a `RETURNING` whose
/// FROM list has more than one table.
pub(crate) fn effect_columns(alias: &str) -> String {
    crate::edge::qualified(EFFECT_COLUMNS, alias)
}

/// The SQL of a job event's payload (`{"type", "timestamp", "data"}`, as
/// the Standard Webhooks specification recommends) over a row `x` with
/// `jobs` columns.
const JOB_PAYLOAD: &str = "jsonb_build_object(
        'type', 'job.' || x.state,
        'timestamp', offpeak_utc_text(x.finished_at),
        'data', jsonb_build_object(
            'id', x.id, 'state', x.state, 'model', x.model,
            'result', x.result, 'error', x.error, 'credits', x.credits, 'cache_hit', x.cache_hit,
            'user_id', x.user_id, 'metadata', x.metadata, 'group_id', x.group_id, 'attempts', x.attempts,
            'created_at', offpeak_utc_text(x.created_at), 'started_at', offpeak_utc_text(x.started_at),
            'finished_at', offpeak_utc_text(x.finished_at)))";

/// Two CTEs (`{src}_events`, `{src}_progress`, each preceded by a comma)
/// that write the effects of the terminal rows of the CTE `src`, which
/// returns [`EFFECT_COLUMNS`]; rows of `src` in a state that is not
/// terminal (a follower sent back to `held`) are left out.
///
/// The events are one narrow row in `webhook_events` per statement, listing
/// its jobs whose tenant has an enabled endpoint (no index, no key, no
/// payload: see the migration `20261205000002_webhook_events.sql` for what
/// the full delivery rows cost here); the delivery loop makes their
/// deliveries later with [`fan_out`], off the path of the statement that
/// ends the jobs.
pub(crate) fn terminal_effects(src: &str) -> String {
    format!(
        ",
         {src}_events AS (
             INSERT INTO webhook_events (job_ids, finished_at)
             SELECT array_agg(x.id), min(x.finished_at) FROM {src} x
             WHERE x.state IN {TERMINAL}
               AND EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.tenant_id = x.tenant_id AND w.disabled_at IS NULL)
             HAVING count(*) > 0
         ),
         {src}_progress AS (
             INSERT INTO group_progress (group_id, done)
             SELECT group_id, count(*) FROM {src}
             WHERE group_id IS NOT NULL AND state IN {TERMINAL}
             GROUP BY group_id
         )"
    )
}

/// A CTE (`{events}_deliveries`, preceded by a comma) that makes the
/// deliveries of the job events the CTE `events` returns (`job_ids`; rows
/// taken out of `webhook_events` by the same statement): one row per job
/// and enabled endpoint of its tenant subscribed to the event, sharing one
/// event id (the `webhook-id`), with the payload built once per job from
/// its row as the statement sees it. A terminal job's row does not change
/// until an operator's retry, which fans its events out first (so the
/// payload is the one of the state reached); a job pruned meanwhile has no
/// row, and its event goes with it. Returns one row per delivery made.
pub(crate) fn fan_out(events: &str) -> String {
    format!(
        ",
         {events}_deliveries AS (
             INSERT INTO webhook_deliveries (event_id, endpoint_id, tenant_id, event_type, payload, created_at, next_attempt_at)
             SELECT s.event_id, e.id, s.tenant_id, s.event_type, s.payload, s.finished_at, s.finished_at
             FROM (SELECT x.tenant_id, x.finished_at, 'job.' || x.state AS event_type,
                          gen_random_uuid() AS event_id, {JOB_PAYLOAD} AS payload
                   FROM (SELECT DISTINCT unnest(job_ids) AS job_id FROM {events}) ev JOIN job_view x ON x.id = ev.job_id
                   WHERE x.state IN {TERMINAL}
                  ) s
             JOIN webhook_endpoints e
               ON e.tenant_id = s.tenant_id AND e.disabled_at IS NULL AND s.event_type = ANY(e.events)
             RETURNING 1
         )"
    )
}

