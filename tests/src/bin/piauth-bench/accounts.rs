//! GetToken with two accounts against one, in the same run. Each worker is
//! a session of its own (as each pi process is), so every call goes through
//! the choice of account; the one-account daemon is the baseline. The two
//! are measured in turns at each concurrency, so they share the machine's
//! noise.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use piauth_client::Client;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::MockOpenAi;
use serde_json::json;

use crate::figures::{Figures, measure, percentile, us};
use crate::process::start_daemon;

pub async fn run(
    secs: f64,
    dir: &Path,
    mock: &MockOpenAi,
    figs: &mut Figures,
) -> anyhow::Result<()> {
    let one = dir.join("one-account");
    let two = dir.join("two-accounts");
    for (home, account) in [(&one, "acc-one"), (&two, "acc-x")] {
        std::fs::create_dir_all(home.join("agent"))?;
        let set = mock
            .state
            .seed_login(account, &format!("{account}@example.com"), "pro");
        write_codex_login(&home.join("agent").join("auth.json"), &set)?;
    }
    // The second account, where piauthd keeps the accounts not in auth.json.
    let shelf = two.join(".local/share/piauthd/accounts");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&shelf)?;
    let set = mock.state.seed_login("acc-y", "acc-y@example.com", "pro");
    write_codex_login(&shelf.join("acc-y.json"), &set)?;

    let (d1, _) = start_daemon(&one, "one", &mock.issuer(), &mock.codex_base())?;
    let (d2, _) = start_daemon(&two, "two", &mock.issuer(), &mock.codex_base())?;
    let mut check = Client::connect(&d2.socket).await?;
    anyhow::ensure!(
        check.accounts().await?.accounts.len() == 2,
        "the two-account daemon keeps both accounts"
    );

    for c in [1usize, 16, 64] {
        let p50 = |lat: &[std::time::Duration]| us(percentile(lat, 0.5));
        let mut base = Vec::new();
        let mut with_two = Vec::new();
        // Turns: one, two, one, two: a drift of the machine hits both.
        for _ in 0..2 {
            for (socket, into) in [(&d1.socket, &mut base), (&d2.socket, &mut with_two)] {
                let clients = Arc::new(connect(socket, c).await?);
                let (lat, _) = measure(c, secs / 2.0, move |w| {
                    let mut cl = clients[w].clone();
                    async move {
                        let _ = cl.session_token(&format!("session-{w}"), "", 60).await;
                    }
                })
                .await;
                into.extend(lat);
            }
        }
        base.sort_unstable();
        with_two.sort_unstable();
        figs.add(
            &format!("get_token_two_accounts_c{c}_p50"),
            p50(&with_two),
            "us",
            json!({"baseline_one_account_p50_us": p50(&base)}),
        );
        figs.add(
            &format!("get_token_two_over_one_account_c{c}"),
            p50(&with_two) / p50(&base).max(f64::MIN_POSITIVE),
            "x",
            json!({"target_max": 1.1}),
        );
    }
    Ok(())
}

async fn connect(socket: &Path, n: usize) -> anyhow::Result<Vec<Client>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Client::connect(socket).await?);
    }
    Ok(out)
}
