//! Test helper: takes pi's lock on the given `auth.json` the way piauthd
//! does, prints "locked", and holds it until killed. Tests SIGKILL it to
//! leave an orphaned lock behind.

use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: lock-holder <auth.json>"))?;
    let lock = piauthd::PiLock::acquire(path.as_ref(), Duration::from_secs(5)).await?;
    println!("locked {}", lock.path().display());
    std::future::pending::<()>().await;
    Ok(())
}
