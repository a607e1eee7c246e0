//! Where each setting comes from, in order of precedence: a flag on the command line, then its
//! `KUBELET_PUSH_*` environment variable, then the `--config-file`'s top-level key of the same
//! name (`interval: 5s`, `label: [team=a]`), then the flag's default. [`settle`] parses the
//! command line once, reads the file, turns each of its settings that neither the command line
//! nor the environment gave into the flag it names, and parses again; an error names the
//! file, line and key (a bad value from the environment names the variable). It also refuses
//! an unknown `KUBELET_PUSH_*` variable, naming the closest one.
//!
//! `Config::from_args` reads the file too, for its `remote-write` and `scrape` lists; the
//! top-level settings are applied here only, so a caller that builds [`crate::cli::Cli`]
//! itself (the in-process tests) gets them only through [`settle`].

use std::ffi::OsString;
use std::path::Path;

use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use super::sandbox::{in_sandbox, sandbox_mount_point};
use crate::cli::Cli;
use crate::config_file::{at, at_span, Setting};

/// The command line after the file's settings were applied under it.
#[derive(Debug)]
pub struct Settled {
    pub matches: ArgMatches,
    pub cli: Cli,
}

#[derive(Debug)]
pub enum SettleError {
    /// clap's own: `--help`, `--version`, or a usage error on the command line, printed as
    /// clap prints it.
    Clap(clap::Error),
    /// A bad value from the environment or the file, an unknown variable or key: printed as
    /// `error: …`, exit 64.
    Usage(String),
}

/// The command line `argv` (the program's name first) with the file's settings applied under
/// the flags and the environment, as `main` runs the agent.
pub fn settle(argv: Vec<OsString>) -> Result<Settled, SettleError> {
    let matches =
        Cli::command().try_get_matches_from(&argv).map_err(|e| {
            match from_environment(&e, &argv) {
                Some(message) => SettleError::Usage(message),
                None => SettleError::Clap(e),
            }
        })?;
    let names: Vec<OsString> = std::env::vars_os().map(|(k, _)| k).collect();
    if let Some(e) = crate::cli::unknown_env(names.iter().filter_map(|n| n.to_str())) {
        return Err(SettleError::Usage(e));
    }
    let Some(path) = matches.get_one::<std::path::PathBuf>("config_file") else {
        return finish(matches);
    };
    let path = in_sandbox(path, sandbox_mount_point().as_deref());
    let file = crate::config_file::load(&path)
        .map_err(|e| SettleError::Usage(format!("--config-file: {}", e.0)))?;
    let demo = matches.subcommand_name() == Some("demo");
    let mut args = Vec::new();
    for setting in &file.settings {
        let key = setting.key.as_str();
        // The demo polls its own kubelet at its own pace: what it ignores from the
        // environment it ignores from the file.
        if demo && (key.starts_with("kubelet-") || key == "interval") {
            continue;
        }
        args.extend(synthesize(&path, setting, &matches)?);
    }
    if args.is_empty() {
        return finish(matches);
    }
    let mut all = argv;
    let rest = all.split_off(1.min(all.len()));
    all.extend(args);
    all.extend(rest);
    let matches = Cli::command()
        .try_get_matches_from(&all)
        .map_err(|e| SettleError::Usage(format!("--config-file: {}", reason(&e))))?;
    finish(matches)
}

fn finish(matches: ArgMatches) -> Result<Settled, SettleError> {
    let cli = Cli::from_arg_matches(&matches).map_err(SettleError::Clap)?;
    Ok(Settled { matches, cli })
}

/// The flags `setting` stands for, or none when the command line or the environment set it
/// already; each value checked alone first, so an error points at it.
fn synthesize(
    path: &Path,
    setting: &Setting,
    matches: &ArgMatches,
) -> Result<Vec<OsString>, SettleError> {
    let key = setting.key.as_str();
    let command = Cli::command();
    let Some(arg) = command.get_arguments().find(|a| a.get_long() == Some(key)) else {
        // config_file refuses a key that is not a flag; nothing to apply.
        return Ok(Vec::new());
    };
    let given = matches!(
        matches.value_source(arg.get_id().as_str()),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    if given {
        return Ok(Vec::new());
    }
    let fail = |span: &marked_yaml::Span, reason: &str| {
        SettleError::Usage(format!(
            "--config-file: {}",
            at_span(path, span, key, reason)
        ))
    };
    let switch = matches!(arg.get_action(), clap::ArgAction::SetTrue);
    let mut out = Vec::new();
    for value in &setting.values {
        let flag = if switch {
            match crate::cli::parse_bool(value) {
                Some(true) => format!("--{key}"),
                Some(false) => continue,
                None => {
                    return Err(fail(
                        value.span(),
                        "takes true or false (also 1/0, yes/no, on/off)",
                    ))
                }
            }
        } else {
            format!("--{key}={}", value.as_str())
        };
        Cli::command()
            .try_get_matches_from(["kubelet-push", flag.as_str()])
            .map_err(|e| {
                SettleError::Usage(format!(
                    "--config-file: {}",
                    at(path, value, key, &reason(&e))
                ))
            })?;
        out.push(OsString::from(flag));
    }
    if out.len() > 1 {
        let all = std::iter::once(OsString::from("kubelet-push")).chain(out.iter().cloned());
        Cli::command()
            .try_get_matches_from(all)
            .map_err(|_| fail(setting.key.span(), "takes one value, not a list"))?;
    }
    Ok(out)
}

/// What a clap error says, in one line without clap's framing: the value parser's own reason
/// when it has one, else clap's message.
fn reason(e: &clap::Error) -> String {
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => format!("invalid value {v:?}: "),
        _ => String::new(),
    };
    if let Some(source) = std::error::Error::source(e) {
        return format!("{value}{source}");
    }
    e.render()
        .to_string()
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .map(|l| l.trim_start_matches("error: "))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `e` reworded to name the environment variable, when the value it is about came from
/// there rather than from `argv`: `KUBELET_PUSH_INTERVAL=5` is not an `--interval` anyone
/// typed.
fn from_environment(e: &clap::Error, argv: &[OsString]) -> Option<String> {
    if !e.use_stderr() {
        return None;
    }
    let Some(ContextValue::String(invalid)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = invalid.split_whitespace().next()?.strip_prefix("--")?;
    let typed = argv.iter().skip(1).filter_map(|a| a.to_str()).any(|a| {
        a.strip_prefix("--")
            .and_then(|a| a.strip_prefix(long))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
    });
    if typed {
        return None;
    }
    let command = Cli::command();
    let env = std::iter::once(&command)
        .chain(command.get_subcommands())
        .flat_map(clap::Command::get_arguments)
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())?
        .to_str()?
        .to_owned();
    std::env::var_os(&env)?;
    Some(format!(
        "{env} (--{long} from the environment): {}",
        reason(e)
    ))
}
