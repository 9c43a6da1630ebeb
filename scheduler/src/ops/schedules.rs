//! `schedules list`, `schedules pause`, `schedules resume`.

use offpeak_store as db;

use crate::cli::{ScheduleIdArgs, SchedulesCommand};

/// Runs one `schedules` subcommand.
///
/// # Errors
/// An unknown tenant or schedule, or database errors.
pub async fn run(c: SchedulesCommand) -> anyhow::Result<()> {
    use offpeak_store::schedules as sched_db;
    match c {
        SchedulesCommand::List(a) => {
            let pool = db::connect(&a.db.database_url, 2, a.db.connect_timeout()).await?;
            let tenant_id = match &a.tenant {
                Some(name) => Some(db::tenants::by_name(&pool, name).await?.ok_or_else(|| anyhow::anyhow!("no tenant named '{name}'"))?.id),
                None => None,
            };
            let rows = sched_db::list_all(&pool, tenant_id, a.limit).await?;
            if a.json {
                let out: Vec<_> = rows
                    .into_iter()
                    .map(|r| {
                        let mut v = serde_json::to_value(crate::api::schedules::ScheduleView::from(r.schedule)).unwrap_or_default();
                        v["tenant"] = serde_json::json!(r.tenant_name);
                        v
                    })
                    .collect();
                println!("{}", serde_json::json!({"schedules": out}));
            } else {
                println!("{:<36}  {:<16}  {:<24}  {:<18}  {:<20}  {:<8}  {:<6}  NEXT_FIRE_AT", "ID", "TENANT", "NAME", "CRON", "TIMEZONE", "CATCH_UP", "STATE");
                for r in rows {
                    let s = r.schedule;
                    let next = s.next_fire_at.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                    let state = if s.paused { "paused" } else { "active" };
                    println!(
                        "{:<36}  {:<16}  {:<24}  {:<18}  {:<20}  {:<8}  {:<6}  {next}",
                        s.id, r.tenant_name, s.name, s.cron, s.timezone, s.catch_up, state
                    );
                }
            }
            Ok(())
        }
        SchedulesCommand::Pause(a) => set_paused(a, true).await,
        SchedulesCommand::Resume(a) => set_paused(a, false).await,
    }
}

/// Pauses or resumes one schedule; resuming restarts it from now.
async fn set_paused(a: ScheduleIdArgs, paused: bool) -> anyhow::Result<()> {
    use offpeak_store::schedules as sched_db;
    use offpeak_core::schedule::CronSchedule;
    let pool = db::connect(&a.db.database_url, 2, a.db.connect_timeout()).await?;
    let mut tx = pool.begin().await?;
    let mut row = sched_db::lock(&mut tx, None, a.id).await?.ok_or_else(|| anyhow::anyhow!("no schedule with id {}", a.id))?;
    let now = offpeak_store::clock::database_now(&mut *tx).await?;
    row.next_fire_at = if paused {
        None
    } else if row.paused || row.next_fire_at.is_none() {
        let schedule = CronSchedule::parse(&row.cron, row.timezone)?;
        Some(schedule.next_after(now).ok_or_else(|| anyhow::anyhow!("'{}' never fires again", row.cron))?)
    } else {
        row.next_fire_at
    };
    row.paused = paused;
    row.updated_at = now;
    let row = sched_db::update(&mut *tx, &row).await?;
    tx.commit().await?;
    let next = row.next_fire_at.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    if a.json {
        println!("{}", serde_json::json!({"id": row.id, "name": row.name, "paused": row.paused, "next_fire_at": row.next_fire_at}));
    } else {
        println!("schedule {} ('{}') {}; next firing: {next}", row.id, row.name, if paused { "paused" } else { "resumed" });
    }
    Ok(())
}
