//! Writing to stdout: text, or the server's JSON. A closed pipe (`flowkit runs | head`) ends the
//! program quietly instead of panicking.

use std::fmt::Display;
use std::io::Write;

/// Prints `text` and a newline.
pub fn line(text: impl Display) {
    write(format_args!("{text}\n"));
}

/// Prints `text` as it is (a table ends in its own newline).
pub fn text(text: impl Display) {
    write(format_args!("{text}"));
}

/// Prints a JSON value, indented.
pub fn json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    line(text);
}

fn write(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {error}");
        std::process::exit(1);
    }
}
