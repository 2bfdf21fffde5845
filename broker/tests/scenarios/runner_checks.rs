//! The runner itself must fail where a scenario is wrong.

use super::*;

/// The runner itself: each of these scenarios is wrong in one way and must fail at the given
/// step with a reason containing the given text, so a passing suite is never a vacuous one.
#[tokio::test]
async fn runner_reports_failures() {
    let cases: &[(&str, &str)] = &[
        // (steps after a `connect` at index 0, "index|expected text")
        (
            r#"{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payload":"a"},
               {"op":"expect_events","subscription":"s","payloads":["b"]}"#,
            "3|event 0 is",
        ),
        (
            r#"{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payload":"a"},
               {"op":"expect_events","subscription":"s","events":[{"payload":"a","offset":1}]}"#,
            "3|expected *@1",
        ),
        (
            r#"{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payload":"a"},
               {"op":"expect_events","subscription":"s","events":[{"payload":"a","stream":"y"}]}"#,
            "3|expected y@*",
        ),
        (
            r#"{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payloads":["a","b"]},
               {"op":"expect_events","subscription":"s","any_order":true,"payloads":["b","c"]}"#,
            "3|unexpected event",
        ),
        (
            r#"{"op":"subscribe","as":"s","stream":"x"},
               {"op":"expect_events","subscription":"s","payloads":["a"],"timeout_ms":100}"#,
            "2|timed out after 100 ms: 0 of 1",
        ),
        (
            r#"{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payload":"a"},
               {"op":"expect_no_event","subscription":"s","within_ms":2000}"#,
            "3|unexpected event",
        ),
        (
            r#"{"op":"subscribe","as":"s","stream":"x"},{"op":"close","client":"default"},
               {"op":"expect_events","subscription":"s","payloads":[],"expect_error":{"code":"closed"}}"#,
            "3|ended without an error",
        ),
        (
            r#"{"op":"publish","stream":"x","payload":"a","expect_error":{"code":"invalid_argument"}}"#,
            "1|but the step succeeded",
        ),
        (
            r#"{"op":"publish","stream":"x y","payload":"a","expect_error":{"code":"conflict"}}"#,
            "1|expected error conflict, got (invalid_argument)",
        ),
        (
            r#"{"op":"publish","stream":"x y","payload":"a"}"#,
            "1|unexpected error (invalid_argument)",
        ),
        (
            r#"{"op":"publish","stream":"x","payload":"a"},
               {"op":"queue_pull","stream":"x","group":"g","expect":[{"payload":"a","attempt":2}]}"#,
            "2|message 0 is",
        ),
        (
            r#"{"op":"queue_pull","stream":"x","group":"g","expect":[{"payload":"a"}]}"#,
            "1|pulled 0 messages, expected 1",
        ),
        (
            r#"{"op":"publish","stream":"x","payload":"a"},
               {"op":"queue_pull","stream":"x","group":"g","as":"m"},
               {"op":"queue_ack","stream":"x","group":"g","offsets":"m","expect_count":2}"#,
            "3|count is 1, expected 2",
        ),
        (
            r#"{"op":"queue_ack","stream":"x","group":"g","offsets":"nope"}"#,
            "1|unknown offset alias",
        ),
        (
            r#"{"op":"publish","stream":"x","payload":"a"},
               {"op":"queue_pull","stream":"x","group":"g","as":"m"},
               {"op":"queue_ack","stream":"x","group":"g","offsets":"m[1]"}"#,
            "3|holds 1 offsets",
        ),
        (
            r#"{"op":"dead_letters","stream":"x","group":"g","expect":[{"payload":"a"}]}"#,
            "1|0 dead letters, expected 1",
        ),
        (
            r#"{"op":"cache_put","cache":"c","key":"k","value":"v"},
               {"op":"cache_get","cache":"c","key":"k","expect":"w"}"#,
            "2|got \"v\"",
        ),
        (
            r#"{"op":"cache_put","cache":"c","key":"k","value":"v"},
               {"op":"cache_get","cache":"c","key":"k","expect":null}"#,
            "2|expected a miss",
        ),
        (
            r#"{"op":"cache_get","cache":"c","key":"k","expect":"v"}"#,
            "1|got a miss",
        ),
        (
            r#"{"op":"cache_put","cache":"c","key":"k","value":"v","as":"v1"},
               {"op":"cache_put","cache":"c","key":"k","value":"w","expect_version":{"lt":"v1"}}"#,
            "2|is not lt",
        ),
        (
            r#"{"op":"cache_delete","cache":"c","key":"k","expect_existed":true}"#,
            "1|existed = false, expected true",
        ),
        (
            r#"{"op":"cache_get_many","cache":"c","keys":["a"],"expect":["x"]}"#,
            "1|key \"a\": got a miss",
        ),
        (
            r#"{"op":"cache_put","cache":"c","key":"k","value":"v"},
               {"op":"wait_until_cache_miss","cache":"c","key":"k","timeout_ms":100}"#,
            "2|still holds",
        ),
        (
            r#"{"op":"publish","stream":"x","payload":"a","typo":1}"#,
            "1|does not take key \"typo\"",
        ),
        (
            r#"{"op":"cache_get","cache":"c","key":"k"}"#,
            "1|needs expect",
        ),
        (
            r#"{"op":"cache_get","cache":"c","key":"k","expect":null,"expect_error":{"code":"closed"}}"#,
            "1|cannot be combined with expect_error",
        ),
        (
            r#"{"op":"publish","client":"ghost","stream":"x","payload":"a"}"#,
            "1|unknown client alias",
        ),
        (
            r#"{"op":"queue_pull","stream":"x","group":"g","wait_ms":3000,"timeout_ms":200}"#,
            "1|timed out after 200 ms",
        ),
        (r#"{"op":"fly"}"#, "1|unknown op"),
        (
            r#"{"op":"expect_error_typo","expect_error":{"code":"nonsense"}}"#,
            "1|unknown op",
        ),
        (
            r#"{"op":"publish","stream":"x","payload":"a","expect_error":{"code":"nonsense"}}"#,
            "1|unknown code",
        ),
    ];
    let broker = Brokers::start("scenario-runner").await;
    let mut wrong = Vec::new();
    for (i, (steps, want)) in cases.iter().enumerate() {
        let (at, text) = want.split_once('|').unwrap();
        let doc = format!(
            r#"{{"name":"case","description":"runner self-test","steps":[{{"op":"connect"}},{steps}]}}"#
        );
        match run_text(&broker, "case", &doc, 1000 + i).await {
            Ok(()) => wrong.push(format!("case {i} passed; expected a failure at {want}")),
            Err(reason) => {
                let prefix = format!("step {at} (");
                if !reason.starts_with(&prefix) || !reason.contains(text) {
                    wrong.push(format!("case {i}: expected {want}, got {reason}"));
                }
            }
        }
    }
    // Scenario-level rules.
    let top: &[(&str, &str, &str)] = &[
        (
            "other",
            r#"{"name":"case","description":"d","steps":[{"op":"connect"}]}"#,
            "differs from the file name",
        ),
        (
            "case",
            r#"{"name":"case","description":"d","steps":[]}"#,
            "non-empty",
        ),
        (
            "case",
            r#"{"name":"case","description":"d","steps":[{"op":"connect"}],"extra":1}"#,
            "unknown top-level key",
        ),
        (
            "case",
            r#"{"name":"case","description":"d","timeout_ms":300,"steps":[{"op":"connect"},
               {"op":"subscribe","as":"s","stream":"x"},
               {"op":"expect_events","subscription":"s","payloads":["never"],"timeout_ms":5000}]}"#,
            "step 2 (expect_events): scenario timed out after 300 ms",
        ),
    ];
    for (i, (stem, doc, text)) in top.iter().enumerate() {
        match run_text(&broker, stem, doc, 2000 + i).await {
            Ok(()) => wrong.push(format!("top case {i} passed; expected {text:?}")),
            Err(reason) if reason.contains(text) => {}
            Err(reason) => wrong.push(format!("top case {i}: expected {text:?}, got {reason}")),
        }
    }
    // And a correct one passes, with `${ns}` substituted.
    let ok = r#"{"name":"case","description":"d","steps":[{"op":"connect"},
        {"op":"subscribe","as":"s","namespace":"${ns}","stream":"x"},
        {"op":"publish","stream":"x","payload":{"b64":"AP8="}},
        {"op":"expect_events","subscription":"s","events":[{"payload":{"b64":"AP8="},"stream":"x","offset":0}]}]}"#;
    if let Err(reason) = run_text(&broker, "case", ok, 3000).await {
        wrong.push(format!("the correct case failed: {reason}"));
    }
    assert!(
        wrong.is_empty(),
        "the runner misjudged:\n  {}",
        wrong.join("\n  ")
    );
}

/// The shared self-check every language's runner runs: each scenario of
/// `tests/scenarios/wrong/` is wrong in one way and must fail at the step, and with the reason,
/// that `wrong/failures.json` gives (`step` null: a scenario-level rule, before any step).
#[tokio::test]
async fn runner_fails_every_shared_wrong_scenario() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/wrong");
    let failures: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("failures.json")).expect("wrong/failures.json"),
    )
    .unwrap();
    let failures = failures["failures"].as_object().expect("a failures object");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.ends_with("failures.json"))
        .collect();
    files.sort();
    let stems: std::collections::BTreeSet<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let listed: std::collections::BTreeSet<String> = failures.keys().cloned().collect();
    assert_eq!(stems, listed, "wrong/*.json and failures.json differ");
    assert!(stems.len() >= 40, "only {} wrong scenarios", stems.len());
    let broker = Brokers::start("scenario-wrong").await;
    let mut misjudged = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let want = &failures[&stem];
        let text = want["reason"].as_str().expect("reason");
        match run_file(&broker, path, 4000 + i).await {
            Ok(()) => misjudged.push(format!("{stem} passed; expected {want}")),
            Err(reason) => {
                let at_step = match want["step"].as_u64() {
                    Some(n) => reason.starts_with(&format!("step {n} (")),
                    None => true,
                };
                if !at_step || !reason.contains(text) {
                    misjudged.push(format!("{stem}: expected {want}, got {reason}"));
                }
            }
        }
    }
    assert!(
        misjudged.is_empty(),
        "the runner misjudged:\n  {}",
        misjudged.join("\n  ")
    );
}
