//! Parsing and checking the options of `#[task(...)]` and `#[flow(...)]`.

use std::collections::HashSet;
use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, MetaNameValue, Token};

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
}

fn expected_list(allowed: &[&str]) -> String {
    allowed
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn lit_str(expr: &Expr, what: &str) -> syn::Result<String> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        }) => Ok(text.value()),
        other => Err(syn::Error::new(
            other.span(),
            format!("expected {what} as a string literal"),
        )),
    }
}

fn lit_int<T>(expr: &Expr, what: &str) -> syn::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int.base10_parse::<T>(),
        other => Err(syn::Error::new(
            other.span(),
            format!("expected {what} as a whole number"),
        )),
    }
}

pub(crate) fn parse(kind: Kind, args: TokenStream) -> syn::Result<Options> {
    let allowed = match kind {
        Kind::Task => TASK_OPTIONS,
        Kind::Flow => FLOW_OPTIONS,
    };
    let pairs = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(args)?;
    let mut options = Options::default();
    let mut seen = HashSet::new();
    let mut backoff_span: Option<Span> = None;
    let mut max_span: Option<Span> = None;
    let mut list_span: Option<Span> = None;
    for pair in pairs {
        let key = pair
            .path
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
            return Err(syn::Error::new(pair.path.span(), message));
        }
        if !seen.insert(key.clone()) {
            return Err(syn::Error::new(
                pair.path.span(),
                format!("duplicate option `{key}`"),
            ));
        }
        let value = &pair.value;
        match key.as_str() {
            "name" => {
                let name = lit_str(value, "the name")?;
                if name.trim().is_empty() {
                    return Err(syn::Error::new(value.span(), "the name cannot be empty"));
                }
                options.name = Some(name);
            }
            "description" => options.description = Some(lit_str(value, "the description")?),
            "retries" => options.retries = lit_int(value, "the number of retries")?,
            "retry_delay" => {
                options.retry_delay = Some(match value {
                    Expr::Array(array) => {
                        if array.elems.is_empty() {
                            return Err(syn::Error::new(
                                array.span(),
                                "give at least one delay, or leave `retry_delay` out",
                            ));
                        }
                        list_span = Some(array.span());
                        RetryDelay::List(
                            array
                                .elems
                                .iter()
                                .map(duration::parse)
                                .collect::<syn::Result<_>>()?,
                        )
                    }
                    other => RetryDelay::Fixed(duration::parse(other)?),
                })
            }
            "backoff" => {
                let backoff = lit_str(value, "the backoff (\"exponential\" or \"fixed\")")?;
                options.exponential = match backoff.as_str() {
                    "exponential" => true,
                    "fixed" => false,
                    other => {
                        return Err(syn::Error::new(
                            value.span(),
                            format!(
                                "unknown backoff \"{other}\"; expected \"exponential\" or \"fixed\""
                            ),
                        ));
                    }
                };
                backoff_span = Some(value.span());
            }
            "max_retry_delay" => {
                options.max_retry_delay = Some(duration::parse(value)?);
                max_span = Some(pair.path.span());
            }
            "retry_jitter" => {
                let jitter = match value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Float(f), ..
                    }) => f.base10_parse::<f64>()?,
                    Expr::Lit(ExprLit {
                        lit: Lit::Int(i), ..
                    }) => i.base10_parse::<u32>()? as f64,
                    other => {
                        return Err(syn::Error::new(
                            other.span(),
                            "expected the jitter as a fraction, like `0.2`",
                        ));
                    }
                };
                if !(0.0..=1.0).contains(&jitter) {
                    return Err(syn::Error::new(
                        value.span(),
                        "the jitter is a fraction of the delay between 0.0 and 1.0",
                    ));
                }
                options.retry_jitter = jitter;
            }
            "retry_if" => match value {
                Expr::Path(_) | Expr::Closure(_) => options.retry_if = Some(value.clone()),
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "expected a function (`retry_if = is_transient`) taking `&E` and returning `bool`",
                    ));
                }
            },
            "timeout" => options.timeout = Some(duration::parse(value)?),
            "tags" => {
                let Expr::Array(array) = value else {
                    return Err(syn::Error::new(
                        value.span(),
                        "expected a list of strings, like `tags = [\"api\", \"daily\"]`",
                    ));
                };
                for tag in &array.elems {
                    options.tags.push(lit_str(tag, "each tag")?);
                }
            }
            "concurrency_limit" => {
                let limit: usize = lit_int(value, "the concurrency limit")?;
                if limit == 0 || limit > (usize::MAX >> 4) {
                    return Err(syn::Error::new(
                        value.span(),
                        "the concurrency limit must be at least 1 (and not absurdly large)",
                    ));
                }
                options.concurrency_limit = Some(limit);
            }
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
    Ok(options)
}
