//! The run report opened in a real headless Chromium: a screenshot shows the accuracy table, a curve
//! and a rollout with highlighted cues, and Chromium's network log shows the page loading nothing
//! from the network. Skipped, visibly, where no Chromium is installed (`cargo xtask setup` installs
//! Debian's `chromium` when it runs as root).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use longrl_report::html::{PageOptions, svg::PALETTE, write_report};
use longrl_report::rollout_log::{GroupEntry, PromptEntry, RolloutEntry, RolloutLog};

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// A small finished run: SFT then two RL phases, two stage evaluations, logged rollouts.
fn make_run(dir: &Path) {
    let mut metrics = String::new();
    for step in 1..=10u64 {
        metrics.push_str(&format!("{{\"step\":{step},\"stage\":\"sft\",\"loss\":{}}}\n", 3.0 / step as f64));
    }
    for step in 11..=30u64 {
        let (phase, name) = if step <= 20 { (0, "short") } else { (1, "long") };
        let reward = (step - 10) as f64 / 25.0;
        metrics.push_str(&format!(
            "{{\"step\":{step},\"stage\":\"rl\",\"phase\":{phase},\"phase_name\":\"{name}\",\"reward/mean\":{reward},\"accuracy\":{reward},\"actor/entropy\":{e},\"response/length_mean\":{l},\"behaviour/backtracking/all\":{b}}}\n",
            e = 2.0 - reward,
            l = 40.0 + step as f64,
            b = reward * 2.0
        ));
    }
    std::fs::write(dir.join("metrics.jsonl"), metrics).unwrap();
    std::fs::create_dir_all(dir.join("eval")).unwrap();
    let cell = |a: f64| format!("{{\"n\":80,\"accuracy\":{a},\"ci95\":[{},{}]}}", a - 0.1, a + 0.1);
    let stages = format!(
        "{{\"stage\":\"sft\",\"overall\":{},\"by_bucket\":{{\"128\":{},\"512\":{}}},\"by_kind\":{{}}}}\n\
         {{\"stage\":\"long\",\"overall\":{},\"by_bucket\":{{\"128\":{},\"512\":{}}},\"by_kind\":{{}}}}\n",
        cell(0.2),
        cell(0.35),
        cell(0.12),
        cell(0.3),
        cell(0.4),
        cell(0.25)
    );
    std::fs::write(dir.join("eval/stages.jsonl"), stages).unwrap();
    let mut log = RolloutLog::open(dir, None).unwrap();
    let prompt = PromptEntry {
        example: "ex-7".into(),
        data_source: "docqa".into(),
        text: "<text>The bridge at Kelden was painted green in 1901.</text> What colour was the bridge?".into(),
        ground_truth: "green".into(),
    };
    let rollout = |text: &str, reward: f64| RolloutEntry {
        text: text.into(),
        tokens: 20,
        finish: "stop".into(),
        reward: Some(reward),
        shaped_reward: Some(reward),
        advantage: Some(reward - 0.5),
        decided_by: "docqa.sub_em".into(),
        reward_details: serde_json::json!({"answer": "green"}),
        correct: Some(reward >= 1.0),
    };
    let group = GroupEntry {
        step: 21,
        stage: "rl".into(),
        phase: Some(1),
        phase_name: Some("long".into()),
        example: "ex-7".into(),
        data_source: "docqa".into(),
        rollouts: vec![
            rollout(
                "<think>Wait, \"the bridge at Kelden was painted green\". Let me verify.</think> Therefore, the answer is green.",
                1.0,
            ),
            rollout("<think>Red.</think> Therefore, the answer is red.", 0.0),
        ],
    };
    log.append(&prompt, &group).unwrap();
    log.flush().unwrap();
}

/// Run Chromium headless on `page`: a screenshot and a network log. Bounded: killed after 90 s.
fn open_in_chromium(browser: &Path, page: &Path, work: &Path) -> (png::Decoder<std::fs::File>, serde_json::Value) {
    let shot = work.join("shot.png");
    let netlog = work.join("netlog.json");
    let profile = work.join("profile");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--no-pings",
            "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,AutofillServerCommunication",
            // No name resolves: nothing the browser itself tries to reach (it still asks for Google
            // services) leaves the machine, and the network log still records every request.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--hide-scrollbars",
            "--window-size=1200,2600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let decoder = png::Decoder::new(std::fs::File::open(&shot).expect("chromium wrote the screenshot"));
    let log_text = std::fs::read_to_string(&netlog).expect("chromium wrote the network log");
    // A log cut short by an unclean exit lacks its closing brackets; Chromium writes complete logs on a clean exit.
    let log: serde_json::Value = serde_json::from_str(&log_text).expect("the network log is JSON");
    (decoder, log)
}

/// Pixels within `tolerance` per channel of `#rrggbb`.
fn count_colour(rgba: &[u8], channels: usize, hex: &str, tolerance: i32) -> usize {
    let want: Vec<i32> = (0..3).map(|i| i32::from_str_radix(&hex[1 + 2 * i..3 + 2 * i], 16).unwrap()).collect();
    rgba.chunks(channels).filter(|p| (0..3).all(|i| (p[i] as i32 - want[i]).abs() <= tolerance)).count()
}

/// URLs the page asked for: the network log's request jobs with a page initiator (the browser's
/// own service requests have the initiator "not an origin").
fn page_requests(log: &serde_json::Value) -> Vec<String> {
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].as_u64().expect("event type id");
    log["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter(|e| e["params"]["initiator"].as_str().is_some_and(|i| i != "not an origin"))
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_string))
        .collect()
}

fn is_local(url: &str) -> bool {
    ["file:", "data:", "about:", "chrome:", "blob:"].iter().any(|p| url.starts_with(p))
}

#[test]
fn page_renders_in_chromium_and_loads_nothing_remote() {
    let Some(browser) = chromium() else {
        println!(
            "SKIPPED page_renders_in_chromium_and_loads_nothing_remote: no Chromium on PATH (apt-get install chromium)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    make_run(dir.path());
    let page = write_report(dir.path(), PageOptions::default()).unwrap();
    let (decoder, log) = open_in_chromium(&browser, &page, dir.path());
    // To look at the page: REPORT_SCREENSHOT_OUT=/tmp/shot.png cargo test -p longrl-report --test page_in_browser
    if let Some(out) = std::env::var_os("REPORT_SCREENSHOT_OUT") {
        std::fs::copy(dir.path().join("shot.png"), out).unwrap();
    }
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let pixels = &pixels[..info.buffer_size()];
    // The accuracy table's header row, a curve, a rollout's side bar and a highlighted cue are on screen.
    let header = count_colour(pixels, channels, "#dbe7f5", 2);
    let curve = count_colour(pixels, channels, PALETTE[0], 24);
    let rollout_bar = count_colour(pixels, channels, "#2e8b57", 2);
    let cue = count_colour(pixels, channels, "#ffd6d6", 2);
    assert!(header > 1_000, "table header pixels: {header}");
    assert!(curve > 200, "curve pixels: {curve}");
    assert!(rollout_bar > 150, "correct-rollout bar pixels: {rollout_bar}");
    assert!(cue > 50, "backtracking highlight pixels: {cue}");
    let urls = page_requests(&log);
    let remote: Vec<&String> = urls.iter().filter(|u| !is_local(u)).collect();
    assert!(remote.is_empty(), "the page requested remote resources: {remote:?}");

    // Control: the same log does show a page that asks for a network resource (nothing listens on port 9).
    let control = dir.path().join("control.html");
    std::fs::write(&control, "<html><body><img src=\"http://127.0.0.1:9/probe.png\"></body></html>").unwrap();
    let control_dir = dir.path().join("control");
    std::fs::create_dir_all(&control_dir).unwrap();
    let (_, log) = open_in_chromium(&browser, &control, &control_dir);
    let urls = page_requests(&log);
    assert!(
        urls.iter().any(|u| u == "http://127.0.0.1:9/probe.png"),
        "the network log records remote requests: {urls:?}"
    );
}
