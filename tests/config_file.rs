//! The config file from the binary: `check-config`, and `serve --config`.

mod manager_process;

use blender_session_manager::mock_blender::MockBlender;
use manager_process::{clean_command, rpc_call, temp_dir, ManagerProcess};

#[test]
fn check_config_prints_the_effective_settings_and_where_they_come_from() {
    let dir = temp_dir("check-ok");
    let file = dir.join("manager.toml");
    std::fs::write(
        &file,
        "idle_timeout = 1.5\n\n[[backends]]\nname = \"big\"\naddress = \"127.0.0.1:9001\"\nweight = 2\n",
    )
    .unwrap();
    let out = clean_command()
        .args(["check-config", file.to_str().unwrap()])
        .env("SESSION_MANAGER_MAX_QUEUE", "7")
        .env("SESSION_MANAGER_TOKEN", "very-secret")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!("{}: valid\n", file.display())),
        "{stdout}"
    );
    let row = |key: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("idle_timeout"), ["idle_timeout", "1.5", "(file)"]);
    assert_eq!(
        row("backends"),
        ["backends", "big=127.0.0.1:9001/2", "(file)"]
    );
    assert_eq!(row("max_queue"), ["max_queue", "7", "(env)"]);
    assert_eq!(row("token"), ["token", "(set)", "(env)"]);
    assert_eq!(row("db"), ["db", ":memory:", "(env)"]);
    assert_eq!(
        row("command_timeout"),
        ["command_timeout", "180", "(default)"]
    );
    assert!(!stdout.contains("very-secret"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_refuses_a_bad_file_naming_the_key() {
    let dir = temp_dir("check-bad");
    let file = dir.join("manager.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:9880\"\ncomand_timeout = 5\n").unwrap();
    let out = clean_command()
        .args(["check-config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "error: {}:2: unknown key `comand_timeout`",
            file.display()
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    std::fs::write(&file, "command_timeout = 0\n").unwrap();
    let out = clean_command()
        .args(["check-config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":1: command_timeout must be above 0 seconds"),
        "{err}"
    );

    let out = clean_command()
        .args(["check-config", dir.join("missing.toml").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config file"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_accepts_the_example_file() {
    let out = clean_command()
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/manager.toml"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_runs_on_what_the_file_says_under_the_flags() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(MockBlender::start());
    let dir = temp_dir("serve-file");
    let file = dir.join("manager.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\ncompat_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
             max_sessions = 7\nmax_queue = 3\n\n[[backends]]\naddress = \"{}\"\n",
            mock.addr()
        ),
    )
    .unwrap();
    let mut command = clean_command();
    command.args(["serve", "--max-queue", "4"]);
    command.env("SESSION_MANAGER_CONFIG", &file);
    let m = ManagerProcess::spawn(command);
    let status = rpc_call(m.rpc, "get_manager_status", serde_json::json!({}));
    let counts = &status["result"]["counts"];
    assert_eq!(counts["max_sessions"], 7, "{status}");
    assert_eq!(counts["queue_capacity"], 4, "the flag wins: {status}");
    let created = rpc_call(m.rpc, "create_session", serde_json::json!({}));
    assert!(created["result"]["session_id"].is_string(), "{created}");
    drop(m);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_refuses_to_start_on_a_bad_file() {
    let dir = temp_dir("serve-bad");
    let file = dir.join("manager.toml");
    std::fs::write(
        &file,
        "[[backends]]\naddress = \"127.0.0.1:9001\"\nport = 9001\n",
    )
    .unwrap();
    let out = clean_command()
        .args(["serve", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("error: {}:3: unknown key `port`", file.display())),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
