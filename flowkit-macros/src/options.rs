//! Parsing and checking the options of `#[task(...)]` and `#[flow(...)]`.

use std::collections::HashSet;
use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Lit, Meta, Token, UnOp};

use crate::duration;
use crate::expand::Kind;

pub(crate) const TASK_OPTIONS: &[&str] = &[
    "name",
    "description",
    "retries",
    "retry_delay",
    "backoff",
    "max_retry_delay",
    "retry_jitter",
    "retry_if",
    "timeout",
    "tags",
    "persist_result",
    "cache_key",
    "cache_expiration",
    "refresh_cache",
    "record_arguments",
    "on_completion",
    "on_failure",
    "on_retry",
    "on_cancel",
];

pub(crate) const FLOW_OPTIONS: &[&str] = &[
    "name",
    "description",
    "retries",
    "retry_delay",
    "backoff",
    "max_retry_delay",
    "retry_jitter",
    "timeout",
    "tags",
    "concurrency_limit",
    "persist_result",
    "run_name",
    "record_arguments",
    "on_completion",
    "on_failure",
    "on_retry",
    "on_cancel",
];

pub(crate) enum RetryDelay {
    Fixed(Duration),
    List(Vec<Duration>),
}

#[derive(Default)]
pub(crate) struct Options {
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) retries: u32,
    pub(crate) retry_delay: Option<RetryDelay>,
    pub(crate) exponential: bool,
    pub(crate) max_retry_delay: Option<Duration>,
    pub(crate) retry_jitter: f64,
    pub(crate) retry_if: Option<Expr>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) tags: Vec<String>,
    pub(crate) concurrency_limit: Option<usize>,
    /// `persist_result = true|false`, with the span of the option.
    pub(crate) persist_result: Option<(bool, Span)>,
    /// `cache_key = inputs`: the span of the option.
    pub(crate) cache_key: Option<Span>,
    pub(crate) cache_expiration: Option<Duration>,
    pub(crate) refresh_cache: bool,
    /// `record_arguments = true|false`, with the span of the option.
    pub(crate) record_arguments: Option<(bool, Span)>,
    /// `run_name = "etl-{day}"`, checked against the parameters in `expand`.
    pub(crate) run_name: Option<syn::LitStr>,
    /// `on_failure = notify` or `on_failure = [notify, page]`: the hooks of each transition.
    pub(crate) on_completion: Vec<syn::Path>,
    pub(crate) on_failure: Vec<syn::Path>,
    pub(crate) on_retry: Vec<syn::Path>,
    pub(crate) on_cancel: Vec<syn::Path>,
}

/// How an option is written, for error messages.
fn example(option: &str) -> &'static str {
    match option {
        "name" => "name = \"daily-etl\"",
        "description" => "description = \"Loads the day's orders\"",
        "retries" => "retries = 3",
        "retry_delay" => "retry_delay = \"30s\"",
        "backoff" => "backoff = \"exponential\"",
        "max_retry_delay" => "max_retry_delay = \"10m\"",
        "retry_jitter" => "retry_jitter = 0.2",
        "retry_if" => "retry_if = is_transient",
        "timeout" => "timeout = \"2m\"",
        "tags" => "tags = [\"api\", \"daily\"]",
        "concurrency_limit" => "concurrency_limit = 8",
        "persist_result" => "persist_result = true",
        "cache_key" => "cache_key = inputs",
        "cache_expiration" => "cache_expiration = \"1d\"",
        "refresh_cache" => "refresh_cache = true",
        "run_name" => "run_name = \"etl-{day}\"",
        "record_arguments" => "record_arguments = true",
        "on_completion" => "on_completion = record_success",
        "on_failure" => "on_failure = notify_slack",
        "on_retry" => "on_retry = log_retry",
        "on_cancel" => "on_cancel = release_lock",
        _ => "option = value",
    }
}

fn expected_list(allowed: &[&str]) -> String {
    allowed
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A string literal given to `option`; `example` shows one.
fn lit_str(expr: &Expr, option: &str, example: &str) -> syn::Result<String> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        }) => Ok(text.value()),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{option}` expects a string literal, like `{example}`"),
        )),
    }
}

/// True for `-1`, whether syn folded the sign into the literal or not.
fn is_negative_number(expr: &Expr) -> bool {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int.base10_digits().starts_with('-'),
        Expr::Lit(ExprLit {
            lit: Lit::Float(float),
            ..
        }) => float.base10_digits().starts_with('-'),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => matches!(
            &**expr,
            Expr::Lit(ExprLit {
                lit: Lit::Int(_) | Lit::Float(_),
                ..
            })
        ),
        _ => false,
    }
}

/// A whole number given to `option`, which `expects` (e.g. "the number of retries after the
/// first attempt, like `retries = 3`").
fn lit_int(expr: &Expr, option: &str, expects: &str) -> syn::Result<u64> {
    if is_negative_number(expr) {
        return Err(syn::Error::new(
            expr.span(),
            format!("`{option}` cannot be negative; it expects {expects}"),
        ));
    }
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int
            .base10_parse::<u64>()
            .map_err(|_| too_large(expr, option, u64::MAX)),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{option}` expects a whole number: {expects}"),
        )),
    }
}

fn too_large(expr: &Expr, option: &str, max: impl std::fmt::Display) -> syn::Error {
    syn::Error::new(
        expr.span(),
        format!("`{option}` is too large (at most {max})"),
    )
}

pub(crate) fn parse(kind: Kind, args: TokenStream) -> syn::Result<Options> {
    let allowed = match kind {
        Kind::Task => TASK_OPTIONS,
        Kind::Flow => FLOW_OPTIONS,
    };
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args)?;
    let mut options = Options::default();
    let mut seen = HashSet::new();
    let mut backoff_span: Option<Span> = None;
    let mut max_span: Option<Span> = None;
    let mut list_span: Option<Span> = None;
    let mut cache_option_span: Option<(&'static str, Span)> = None;
    for meta in metas {
        let path = meta.path();
        let key = path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        if !allowed.contains(&key.as_str()) {
            let shown = if key.is_empty() {
                "this".to_string()
            } else {
                format!("`{key}`")
            };
            let mut message = format!(
                "unknown {} option {shown}; expected one of {}",
                kind.attribute(),
                expected_list(allowed)
            );
            if key == "retry_if" && kind == Kind::Flow {
                message.push_str(" (`retry_if` is a task option)");
            }
            return Err(syn::Error::new(path.span(), message));
        }
        if !seen.insert(key.clone()) {
            return Err(syn::Error::new(
                path.span(),
                format!("duplicate option `{key}`"),
            ));
        }
        let value = match &meta {
            Meta::NameValue(pair) => &pair.value,
            Meta::Path(_) | Meta::List(_) => {
                return Err(syn::Error::new(
                    meta.span(),
                    format!("`{key}` needs a value: `{}`", example(&key)),
                ));
            }
        };
        match key.as_str() {
            "name" => {
                let name = lit_str(value, "name", example("name"))?;
                if name.trim().is_empty() {
                    return Err(syn::Error::new(value.span(), "`name` cannot be empty"));
                }
                options.name = Some(name);
            }
            "description" => {
                options.description = Some(lit_str(value, "description", example("description"))?)
            }
            "retries" => {
                let retries = lit_int(
                    value,
                    "retries",
                    "the number of retries after the first attempt, like `retries = 3` (`0` for none)",
                )?;
                options.retries =
                    u32::try_from(retries).map_err(|_| too_large(value, "retries", u32::MAX))?;
            }
            "retry_delay" => {
                options.retry_delay = Some(match value {
                    Expr::Array(array) => {
                        if array.elems.is_empty() {
                            return Err(syn::Error::new(
                                array.span(),
                                "`retry_delay` expects at least one delay; give one, or leave `retry_delay` out",
                            ));
                        }
                        list_span = Some(array.span());
                        RetryDelay::List(
                            array
                                .elems
                                .iter()
                                .map(|delay| duration::parse(delay, "retry_delay"))
                                .collect::<syn::Result<_>>()?,
                        )
                    }
                    other => RetryDelay::Fixed(duration::parse(other, "retry_delay")?),
                })
            }
            "backoff" => {
                let backoff = match value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(text),
                        ..
                    }) => text.value(),
                    _ => String::new(),
                };
                options.exponential = match backoff.as_str() {
                    "exponential" => true,
                    "fixed" => false,
                    _ => {
                        return Err(syn::Error::new(
                            value.span(),
                            "`backoff` expects \"exponential\" or \"fixed\"",
                        ));
                    }
                };
                backoff_span = Some(value.span());
            }
            "max_retry_delay" => {
                options.max_retry_delay = Some(duration::parse(value, "max_retry_delay")?);
                max_span = Some(path.span());
            }
            "retry_jitter" => {
                const EXPECTS: &str = "`retry_jitter` expects a fraction of the delay between 0.0 and 1.0, like `retry_jitter = 0.2`";
                let jitter = match value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Float(f), ..
                    }) => f.base10_parse::<f64>().ok(),
                    Expr::Lit(ExprLit {
                        lit: Lit::Int(i), ..
                    }) => i.base10_parse::<i64>().ok().map(|i| i as f64),
                    _ => None,
                };
                match jitter {
                    Some(jitter) if (0.0..=1.0).contains(&jitter) && !is_negative_number(value) => {
                        options.retry_jitter = jitter
                    }
                    _ => return Err(syn::Error::new(value.span(), EXPECTS)),
                }
            }
            "retry_if" => match value {
                Expr::Path(_) | Expr::Closure(_) => options.retry_if = Some(value.clone()),
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "`retry_if` expects a function taking `&E` and returning `bool`, like `retry_if = is_transient` or `retry_if = |e| e.is_transient()`",
                    ));
                }
            },
            "timeout" => options.timeout = Some(duration::parse(value, "timeout")?),
            "tags" => {
                let not_a_list = |span| {
                    syn::Error::new(
                        span,
                        format!(
                            "`tags` expects a list of strings, like `{}`",
                            example("tags")
                        ),
                    )
                };
                let Expr::Array(array) = value else {
                    return Err(not_a_list(value.span()));
                };
                for tag in &array.elems {
                    match tag {
                        Expr::Lit(ExprLit {
                            lit: Lit::Str(text),
                            ..
                        }) => options.tags.push(text.value()),
                        other => return Err(not_a_list(other.span())),
                    }
                }
            }
            "concurrency_limit" => {
                const EXPECTS: &str = "how many task runs of the flow run may run at once, like `concurrency_limit = 8`";
                let limit = lit_int(value, "concurrency_limit", EXPECTS)?;
                if limit == 0 {
                    return Err(syn::Error::new(
                        value.span(),
                        format!("`concurrency_limit` must be at least 1; it expects {EXPECTS}"),
                    ));
                }
                let limit = usize::try_from(limit)
                    .ok()
                    .filter(|&limit| limit <= usize::MAX >> 4)
                    .ok_or_else(|| too_large(value, "concurrency_limit", usize::MAX >> 4))?;
                options.concurrency_limit = Some(limit);
            }
            "persist_result" => {
                options.persist_result = Some((lit_bool(value, "persist_result")?, meta.span()));
            }
            "record_arguments" => {
                options.record_arguments =
                    Some((lit_bool(value, "record_arguments")?, meta.span()));
            }
            "refresh_cache" => {
                options.refresh_cache = lit_bool(value, "refresh_cache")?;
                cache_option_span.get_or_insert(("refresh_cache", path.span()));
            }
            "cache_key" => match value {
                Expr::Path(p) if p.path.is_ident("inputs") => options.cache_key = Some(meta.span()),
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "`cache_key` expects `inputs` (the task's name and the hash of its arguments), like `cache_key = inputs`",
                    ));
                }
            },
            "cache_expiration" => {
                options.cache_expiration = Some(duration::parse(value, "cache_expiration")?);
                cache_option_span.get_or_insert(("cache_expiration", path.span()));
            }
            "run_name" => match value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(text),
                    ..
                }) => options.run_name = Some(text.clone()),
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        format!(
                            "`run_name` expects a string literal, like `{}`",
                            example("run_name")
                        ),
                    ));
                }
            },
            "on_completion" => options.on_completion = hooks(value, "on_completion")?,
            "on_failure" => options.on_failure = hooks(value, "on_failure")?,
            "on_retry" => options.on_retry = hooks(value, "on_retry")?,
            "on_cancel" => options.on_cancel = hooks(value, "on_cancel")?,
            _ => unreachable!("every allowed option is handled above"),
        }
    }
    if let (Some(span), false) = (max_span, options.exponential) {
        return Err(syn::Error::new(
            span,
            "`max_retry_delay` caps an exponential backoff; add `backoff = \"exponential\"`",
        ));
    }
    if let (Some(span), true, Some(_)) = (list_span, options.exponential, backoff_span) {
        return Err(syn::Error::new(
            span,
            "a list of delays already gives each retry its delay; remove `backoff = \"exponential\"` or give one base delay",
        ));
    }
    if let (Some((option, span)), None) = (cache_option_span, options.cache_key) {
        return Err(syn::Error::new(
            span,
            format!("`{option}` applies to a cached task; add `cache_key = inputs`"),
        ));
    }
    if let (Some(span), Some((false, _))) = (options.cache_key, options.persist_result) {
        return Err(syn::Error::new(
            span,
            "`cache_key` stores the task's results; remove `persist_result = false`",
        ));
    }
    Ok(options)
}

/// `true` or `false` given to `option`.
fn lit_bool(expr: &Expr, option: &str) -> syn::Result<bool> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(value),
            ..
        }) => Ok(value.value),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{option}` expects `true` or `false`, like `{option} = true`"),
        )),
    }
}

/// The hooks given to `option`: a function's path, or a non-empty list of them.
fn hooks(expr: &Expr, option: &str) -> syn::Result<Vec<syn::Path>> {
    let expects = |span| {
        syn::Error::new(
            span,
            format!(
                "`{option}` expects an async fn taking `&flowkit::HookContext`, or a list of them, like `{}` or `{option} = [notify_slack, page_oncall]`",
                example(option)
            ),
        )
    };
    match expr {
        Expr::Path(path) if path.qself.is_none() => Ok(vec![path.path.clone()]),
        Expr::Array(array) => {
            if array.elems.is_empty() {
                return Err(syn::Error::new(
                    array.span(),
                    format!(
                        "`{option}` expects at least one hook; give one, or leave `{option}` out"
                    ),
                ));
            }
            array
                .elems
                .iter()
                .map(|hook| match hook {
                    Expr::Path(path) if path.qself.is_none() => Ok(path.path.clone()),
                    other => Err(expects(other.span())),
                })
                .collect()
        }
        other => Err(expects(other.span())),
    }
}
