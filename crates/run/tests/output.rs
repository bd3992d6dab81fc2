//! The command's output through `jobsight-run`: unchanged bytes, the order
//! of stdout and stderr kept when both go to one file, and a closed reader
//! stopping the command as it would without the wrapper.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jobsight-run");

/// `jobsight-run` with no telemetry and no pings configured.
fn jobsight_run() -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("OTEL_")
            || key.starts_with("JOBSIGHT_")
            || [
                "CHECK_UUID",
                "CHECK_SLUG",
                "HC_PING_KEY",
                "CRONITOR_API_KEY",
                "SENTRY_DSN",
                "TRACEPARENT",
            ]
            .contains(&&*key)
        {
            command.env_remove(&*key);
        }
    }
    command.env("OTEL_SDK_DISABLED", "true");
    command
}

/// Runs `command` with stdout and stderr on one pipe, as `2>&1 | cat`
/// does; returns what came out and the exit code.
fn both_on_one_pipe(mut command: Command) -> (String, Option<i32>) {
    let (mut reader, writer) = std::io::pipe().expect("pipe");
    command
        .stdin(Stdio::null())
        .stdout(writer.try_clone().expect("clone"))
        .stderr(writer);
    let mut child = command.spawn().expect("spawned");
    drop(command);
    let mut all = String::new();
    reader.read_to_string(&mut all).expect("read");
    let status = child.wait().expect("waited");
    (all, status.code())
}

const INTERLEAVED: &str = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done";

#[test]
fn stdout_and_stderr_to_one_file_keep_their_order() {
    let mut bare = Command::new("sh");
    bare.args(["-c", INTERLEAVED]);
    let (expected, _) = both_on_one_pipe(bare);
    assert_eq!(
        expected,
        "out1\nerr1\nout2\nerr2\nout3\nerr3\nout4\nerr4\nout5\nerr5\n"
    );
    for _ in 0..3 {
        let mut wrapped = jobsight_run();
        wrapped.args(["--name", "order", "--", "sh", "-c", INTERLEAVED]);
        let (got, code) = both_on_one_pipe(wrapped);
        assert_eq!(code, Some(0));
        assert_eq!(got, expected);
    }
}

/// Runs `command` (stdout and stderr on one pipe), reads one line, closes
/// the pipe; returns the exit code and how long the command took after
/// the close, or `None` if it was still running after 10 s (then killed).
fn read_one_line_and_close(mut command: Command) -> Option<(Option<i32>, Duration)> {
    let (reader, writer) = std::io::pipe().expect("pipe");
    command
        .stdin(Stdio::null())
        .stdout(writer.try_clone().expect("clone"))
        .stderr(writer);
    let mut child = command.spawn().expect("spawned");
    drop(command);
    let mut line = String::new();
    BufReader::new(reader).read_line(&mut line).expect("read");
    assert!(!line.is_empty());
    // The reader is gone now (like `head -1` exiting).
    let closed = Instant::now();
    let (done, status) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = done.send(child.wait().map(|s| s.code()));
    });
    match status.recv_timeout(Duration::from_secs(10)) {
        Ok(code) => Some((code.expect("waited"), closed.elapsed())),
        Err(_) => {
            // SAFETY: kill(2) of the child we started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            None
        }
    }
}

#[test]
fn a_closed_reader_stops_the_command_as_without_the_wrapper() {
    // `timeout 5 jobsight-run -- sh -c 'yes err >&2' 2>&1 | head -1`
    let mut bare = Command::new("sh");
    bare.args(["-c", "yes err >&2"]);
    let (bare_code, _) = read_one_line_and_close(bare).expect("bare command stopped");
    let mut wrapped = jobsight_run();
    wrapped.args(["--name", "yes", "--", "sh", "-c", "yes err >&2"]);
    let (code, took) =
        read_one_line_and_close(wrapped).expect("the command must stop once its reader has gone");
    assert_eq!(code, bare_code, "the same death as without the wrapper");
    // SIGPIPE: 128 + 13 for jobsight-run, which reports a signal death so.
    assert_eq!(code, Some(141));
    eprintln!("stopped {took:?} after the reader closed");

    // Separate streams: stdout's reader gone, stderr elsewhere.
    let mut wrapped = jobsight_run();
    wrapped
        .args(["--name", "yes", "--", "yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = wrapped.spawn().expect("spawned");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut some = [0u8; 10];
    stdout.read_exact(&mut some).expect("read");
    drop(stdout);
    let status = child.wait().expect("waited");
    assert_eq!(status.code(), Some(141));
}

#[test]
fn bytes_pass_through_unchanged() {
    // 5 MB of bytes that are not text, and a 3 MB line.
    let mut data = Vec::with_capacity(8_000_000);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..5_000_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.push((x >> 24) as u8);
    }
    data.extend(std::iter::repeat_n(b'l', 3_000_000));
    data.push(b'\n');
    let dir = std::env::temp_dir().join(format!("jobsight-run-bytes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("data");
    std::fs::File::create(&file)
        .and_then(|mut f| f.write_all(&data))
        .expect("written");
    let path = file.to_string_lossy().into_owned();
    // stdout and stderr to different pipes; stdin passed through.
    let mut wrapped = jobsight_run();
    wrapped
        .args([
            "--name",
            "cat",
            "--",
            "sh",
            "-c",
            "cat; cat \"$0\" >&2",
            &path,
        ])
        .stdin(std::fs::File::open(&file).expect("open"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = wrapped.output().expect("ran");
    assert_eq!(output.status.code(), Some(0));
    assert!(output.stdout == data, "stdout changed");
    assert!(output.stderr == data, "stderr changed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_background_process_holding_the_output_does_not_hold_the_exit() {
    let mut wrapped = jobsight_run();
    wrapped
        .args(["--name", "bg", "--", "sh", "-c", "sleep 5 & echo started"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = wrapped.spawn().expect("spawned");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line, "started\n");
    let status = child.wait().expect("waited");
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn output_limit_0_leaves_the_streams_alone() {
    let mut wrapped = jobsight_run();
    wrapped.args(["--output-limit", "0", "--", "sh", "-c", INTERLEAVED]);
    let (got, code) = both_on_one_pipe(wrapped);
    assert_eq!(code, Some(0));
    assert!(got.starts_with("out1\nerr1\n"), "{got}");
}

#[test]
fn a_slow_reader_gets_everything_the_command_wrote() {
    let mut wrapped = jobsight_run();
    wrapped
        .args([
            "--name",
            "burst",
            "--",
            "head",
            "-c",
            "3000000",
            "/dev/zero",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = wrapped.spawn().expect("spawned");
    // The command is done long before the reader starts.
    std::thread::sleep(Duration::from_millis(1500));
    let mut all = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut all)
        .expect("read");
    assert_eq!(child.wait().expect("waited").code(), Some(0));
    assert_eq!(all.len(), 3_000_000);
}
