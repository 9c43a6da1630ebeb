//! A webhook receiver for the demo: listens on 127.0.0.1 at a free port,
//! prints its URL on the first line of stdout, and appends every request it
//! gets to `--out` as JSON Lines (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature` and the body exactly as received), so the demo can
//! verify the signatures itself, as a submitter's service would.

use std::io::Write as _;
use std::time::Duration;

use clap::Parser;
use offpeak_tests::receiver::Receiver;

#[derive(Parser)]
#[command(about = "A webhook receiver that records what it gets (for the demo)")]
struct Args {
    /// The JSON Lines file each request is appended to.
    #[arg(long)]
    out: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let receiver = Receiver::try_start(None).await?;
    println!("{}", receiver.url());
    std::io::stdout().flush()?;
    let mut written = 0;
    loop {
        let got = receiver.received();
        if got.len() > written {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&args.out)?;
            for r in &got[written..] {
                let line = serde_json::json!({
                    "webhook_id": r.webhook_id,
                    "webhook_timestamp": r.webhook_timestamp,
                    "webhook_signature": r.webhook_signature,
                    "body": String::from_utf8_lossy(&r.raw_body),
                });
                writeln!(file, "{line}")?;
            }
            written = got.len();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
