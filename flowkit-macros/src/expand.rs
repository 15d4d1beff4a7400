//! Turning the annotated function into one that returns a task call or a flow call.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::{self, VisitMut};
use syn::{
    Attribute, Expr, FnArg, GenericParam, Ident, ItemFn, Lifetime, Pat, ReturnType, Type,
    TypeImplTrait, TypeParamBound, TypeReference, parse_quote,
};

use crate::duration;
use crate::options::{self, Options, RetryDelay};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Task,
    Flow,
}

impl Kind {
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            Kind::Task => "#[task]",
            Kind::Flow => "#[flow]",
        }
    }
}

pub(crate) fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(error) => {
            // Not a function: say so, and keep the item so the rest of the crate still compiles.
            let mut out = error.to_compile_error();
            out.extend(item);
            return out;
        }
    };
    match options::parse(kind, args).and_then(|options| generate(kind, &options, &function)) {
        Ok(out) => out,
        Err(error) => {
            // Like tokio's macros: report the error and still emit the function unchanged, so
            // that IDEs and the rest of the crate keep working.
            let mut out = error.to_compile_error();
            out.extend(function.into_token_stream());
            out
        }
    }
}

struct Arg {
    attrs: Vec<Attribute>,
    ident: Ident,
    /// The binding as written (`mut rows`), used where the body receives the value.
    binding: TokenStream,
    ty: Type,
}

fn check_signature(kind: Kind, function: &ItemFn) -> syn::Result<Vec<Arg>> {
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            format!("{} functions must be `async fn`", kind.attribute()),
        ));
    }
    if let Some(constness) = &sig.constness {
        return Err(syn::Error::new(
            constness.span(),
            format!("{} functions cannot be `const`", kind.attribute()),
        ));
    }
    if let syn::Safety::Unsafe(unsafety) = &sig.safety {
        return Err(syn::Error::new(
            unsafety.span(),
            format!("{} functions cannot be `unsafe`", kind.attribute()),
        ));
    }
    if let Some(abi) = &sig.abi {
        return Err(syn::Error::new(
            abi.span(),
            format!("{} functions cannot be `extern`", kind.attribute()),
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new(
            variadic.span(),
            format!("{} functions cannot be variadic", kind.attribute()),
        ));
    }
    let mut args = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new(
                    receiver.span(),
                    format!(
                        "{} cannot take `self`: make it a free function and pass what it needs as arguments",
                        kind.attribute()
                    ),
                ));
            }
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) if pat.subpat.is_none() && pat.by_ref.is_none() => {
                    let mutability = &pat.mutability;
                    let ident = pat.ident.clone();
                    args.push(Arg {
                        attrs: typed.attrs.clone(),
                        binding: quote!(#mutability #ident),
                        ident,
                        ty: (*typed.ty).clone(),
                    });
                }
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        format!(
                            "{} arguments must be plain names (`rows: Vec<Row>`), not patterns",
                            kind.attribute()
                        ),
                    ));
                }
            },
        }
    }
    if kind == Kind::Flow
        && !sig.generics.params.is_empty()
        && let Some(GenericParam::Lifetime(lifetime)) = sig
            .generics
            .params
            .iter()
            .find(|p| matches!(p, GenericParam::Lifetime(_)))
    {
        return Err(syn::Error::new(
            lifetime.span(),
            "#[flow] arguments must be owned: a flow runs as its own tokio task",
        ));
    }
    Ok(args)
}

fn doc_description(attrs: &[Attribute]) -> Option<String> {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value().trim().to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let text = lines.join("\n").trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// True if the return type is spelled `...Result<...>` (std, anyhow, io or an alias named so).
fn returns_result(output: &ReturnType) -> bool {
    match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(path) => path
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "Result"),
            _ => false,
        },
        ReturnType::Default => false,
    }
}

fn options_tokens(kind: Kind, options: &Options, function: &ItemFn) -> TokenStream {
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| function.sig.ident.to_string());
    let description = match options
        .description
        .clone()
        .or_else(|| doc_description(&function.attrs))
    {
        Some(text) => quote!(::core::option::Option::Some(::std::borrow::Cow::Borrowed(#text))),
        None => quote!(::core::option::Option::None),
    };
    let retries = options.retries;
    let delay = match (&options.retry_delay, options.exponential) {
        (Some(RetryDelay::List(list)), _) => {
            let items = list.iter().map(|d| duration::tokens(*d));
            quote!(::flowkit::RetryDelay::List(::std::borrow::Cow::Borrowed(&[#(#items),*])))
        }
        (fixed, exponential) => {
            let base = match fixed {
                Some(RetryDelay::Fixed(d)) => *d,
                _ => std::time::Duration::ZERO,
            };
            let base = duration::tokens(base);
            if exponential {
                let max = match options.max_retry_delay {
                    Some(max) => {
                        let max = duration::tokens(max);
                        quote!(::core::option::Option::Some(#max))
                    }
                    None => quote!(::core::option::Option::None),
                };
                quote!(::flowkit::RetryDelay::Exponential { base: #base, max: #max })
            } else {
                quote!(::flowkit::RetryDelay::Fixed(#base))
            }
        }
    };
    let jitter = options.retry_jitter;
    let timeout = match options.timeout {
        Some(d) => {
            let d = duration::tokens(d);
            quote!(::core::option::Option::Some(#d))
        }
        None => quote!(::core::option::Option::None),
    };
    let tags = &options.tags;
    let persist = match options.persist_result {
        Some((on, _)) => quote!(::core::option::Option::Some(#on)),
        None => quote!(::core::option::Option::None),
    };
    let cache = match options.cache_key {
        Some(_) => {
            let expiration = match options.cache_expiration {
                Some(d) => {
                    let d = duration::tokens(d);
                    quote!(::core::option::Option::Some(#d))
                }
                None => quote!(::core::option::Option::None),
            };
            let refresh = options.refresh_cache;
            quote!(::core::option::Option::Some(::flowkit::CachePolicy {
                key: ::flowkit::CacheKey::Inputs,
                expiration: #expiration,
                refresh: #refresh,
            }))
        }
        None => quote!(::core::option::Option::None),
    };
    // What `flowkit::hook!` expands to, with the call spanned at the hook's path so that a
    // hook of the wrong signature is reported there.
    let hook_list = |paths: &[syn::Path]| {
        let hooks = paths.iter().map(|path| {
            let span = path.span();
            let name = path
                .segments
                .iter()
                .map(|segment| segment.ident.to_string())
                .collect::<Vec<_>>()
                .join("::");
            let call = quote_spanned!(span=>
                ::flowkit::__private::hook_output(#path(__flowkit_context).await)
            );
            quote!(::flowkit::Hook::new(#name, {
                fn __flowkit_hook(
                    __flowkit_context: &::flowkit::HookContext,
                ) -> ::flowkit::HookFuture<'_> {
                    ::std::boxed::Box::pin(async move { #call })
                }
                __flowkit_hook
            }))
        });
        quote!(&[#(#hooks),*])
    };
    let (on_completion, on_failure, on_retry, on_cancel) = (
        hook_list(&options.on_completion),
        hook_list(&options.on_failure),
        hook_list(&options.on_retry),
        hook_list(&options.on_cancel),
    );
    let hooks = quote!(::flowkit::Hooks {
        on_completion: #on_completion,
        on_failure: #on_failure,
        on_retry: #on_retry,
        on_cancel: #on_cancel,
    });
    let common = quote! {
        name: ::std::borrow::Cow::Borrowed(#name),
        description: #description,
        retry: ::flowkit::RetryPolicy {
            retries: #retries,
            delay: #delay,
            jitter: #jitter,
        },
        timeout: #timeout,
        tags: ::std::borrow::Cow::Borrowed(&[#(::std::borrow::Cow::Borrowed(#tags)),*]),
        hooks: #hooks,
    };
    match kind {
        Kind::Task => {
            let record = match options.record_arguments {
                Some((on, _)) => quote!(::core::option::Option::Some(#on)),
                None => quote!(::core::option::Option::None),
            };
            quote!(::flowkit::TaskOptions {
                #common
                persist_result: #persist,
                cache: #cache,
                record_arguments: #record,
            })
        }
        Kind::Flow => {
            let limit = match options.concurrency_limit {
                Some(n) => quote!(::core::option::Option::Some(#n)),
                None => quote!(::core::option::Option::None),
            };
            let persist = matches!(options.persist_result, Some((true, _)));
            let run_name = match &options.run_name {
                Some(template) => {
                    quote!(::core::option::Option::Some(::std::borrow::Cow::Borrowed(#template)))
                }
                None => quote!(::core::option::Option::None),
            };
            let record = matches!(options.record_arguments, Some((true, _)));
            quote!(::flowkit::FlowOptions {
                #common
                concurrency_limit: #limit,
                persist_result: #persist,
                run_name: #run_name,
                record_arguments: #record,
            })
        }
    }
}

/// Gives every elided lifetime in an argument type the task's lifetime `'__fk`.
struct NameElided(Lifetime);

impl VisitMut for NameElided {
    // A reference inside `fn(&T)`, `Fn(&T)` or a `for<'a>` bound is the callee's own lifetime,
    // not the argument's: leave those alone.
    fn visit_type_fn_ptr_mut(&mut self, _: &mut syn::TypeFnPtr) {}

    fn visit_parenthesized_generic_arguments_mut(
        &mut self,
        _: &mut syn::ParenthesizedGenericArguments,
    ) {
    }

    fn visit_bound_lifetimes_mut(&mut self, _: &mut syn::BoundLifetimes) {}

    fn visit_type_reference_mut(&mut self, reference: &mut TypeReference) {
        if reference.lifetime.is_none() {
            reference.lifetime = Some(self.0.clone());
        }
        visit_mut::visit_type_reference_mut(self, reference);
    }

    fn visit_lifetime_mut(&mut self, lifetime: &mut Lifetime) {
        if lifetime.ident == "_" {
            *lifetime = self.0.clone();
        }
    }

    fn visit_type_impl_trait_mut(&mut self, impl_trait: &mut TypeImplTrait) {
        visit_mut::visit_type_impl_trait_mut(self, impl_trait);
        impl_trait
            .bounds
            .push(TypeParamBound::Lifetime(self.0.clone()));
    }
}

fn generate(kind: Kind, opts: &Options, function: &ItemFn) -> syn::Result<TokenStream> {
    let args = check_signature(kind, function)?;
    if let Some(template) = &opts.run_name {
        let names: Vec<String> = args
            .iter()
            .map(|a| {
                let name = a.ident.to_string();
                name.strip_prefix("r#").unwrap_or(&name).to_string()
            })
            .collect();
        crate::run_name::check(template, &names)?;
    }
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
        ..
    } = function;
    let fn_name = &sig.ident;
    let options = options_tokens(kind, opts, function);
    let fallible = returns_result(&sig.output);
    let ret: Type = match &sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => parse_quote!(()),
    };
    let output: Type = if fallible {
        ret.clone()
    } else {
        parse_quote!(::core::result::Result<#ret, ::core::convert::Infallible>)
    };
    let sig_span = sig.ident.span();

    // The future of one attempt, with a "fake return" so type errors point at the user's code
    // (not possible for an `impl Trait` return type, which cannot annotate a `let`).
    let opaque = matches!(ret, Type::ImplTrait(_));
    let attempt = if opaque {
        if fallible {
            quote!(async move #block)
        } else {
            quote!(async move {
                ::core::result::Result::<_, ::core::convert::Infallible>::Ok(async move #block.await)
            })
        }
    } else if fallible {
        quote!(async move {
            let __flowkit_output: #ret = #block;
            __flowkit_output
        })
    } else {
        quote!(async move {
            let __flowkit_output: #ret = async move #block.await;
            ::core::result::Result::<#ret, ::core::convert::Infallible>::Ok(__flowkit_output)
        })
    };
    let attempt = quote_spanned!(sig_span=> ::flowkit::__private::require_send(#attempt));

    let idents: Vec<&Ident> = args.iter().map(|a| &a.ident).collect();
    let bindings: Vec<&TokenStream> = args.iter().map(|a| &a.binding).collect();
    // Each attempt gets its own copy of the arguments when the run may retry; a run without
    // retries moves them into its only attempt.
    let start = if opts.retries > 0 {
        quote!(move || {
            #(let #bindings = ::core::clone::Clone::clone(&#idents);)*
            #attempt
        })
    } else {
        quote!({
            let mut __flowkit_arguments = ::core::option::Option::Some((#(#idents,)*));
            move || {
                let (#(#bindings,)*) = match __flowkit_arguments.take() {
                    ::core::option::Option::Some(arguments) => arguments,
                    ::core::option::Option::None => {
                        ::core::unreachable!("flowkit: a run without retries makes one attempt")
                    }
                };
                #attempt
            }
        })
    };
    let send_checks: Vec<TokenStream> = args
        .iter()
        .map(|arg| {
            let ident = &arg.ident;
            quote_spanned!(arg.ty.span()=> ::flowkit::__private::require_send_argument(&#ident);)
        })
        .collect();
    let (_, _, where_clause) = sig.generics.split_for_impl();

    match kind {
        Kind::Task => {
            let retry_if = match &opts.retry_if {
                Some(Expr::Closure(closure)) => {
                    quote!(::flowkit::__private::retry_if::<#output, _>(#closure))
                }
                Some(path) => {
                    quote_spanned!(path.span()=> |__flowkit_error: &_| #path(__flowkit_error))
                }
                None => quote!(::flowkit::__private::always_retry),
            };
            // Arguments may borrow: the call lives for `'__fk`, which every lifetime and type
            // parameter of the function outlives.
            let fk = Lifetime::new("'__fk", Span::call_site());
            let mut generics = sig.generics.clone();
            let mut bounds: Vec<TokenStream> = Vec::new();
            for param in &generics.params {
                match param {
                    GenericParam::Lifetime(l) => {
                        let l = &l.lifetime;
                        bounds.push(quote!(#l: #fk));
                    }
                    GenericParam::Type(t) => {
                        let t = &t.ident;
                        bounds.push(quote!(#t: #fk));
                    }
                    GenericParam::Const(_) => {}
                }
            }
            generics.params.insert(0, parse_quote!(#fk));
            let mut inputs = Vec::new();
            for arg in &args {
                let mut ty = arg.ty.clone();
                NameElided(fk.clone()).visit_type_mut(&mut ty);
                let (ident, attrs) = (&arg.ident, &arg.attrs);
                inputs.push(quote!(#(#attrs)* #ident: #ty));
            }
            let params = &generics.params;
            let (codec, hash_inputs) = durable_tokens(opts, &args, &output, opaque)?;
            let record_arguments = arguments_tokens(opts, &args);
            let existing = where_clause.map(|w| {
                let predicates = &w.predicates;
                quote!(#predicates,)
            });
            Ok(quote! {
                #(#attrs)*
                #vis fn #fn_name<#params>(#(#inputs),*)
                    -> ::flowkit::TaskCall<#fk, impl ::flowkit::runtime::TaskBody<Output = #output> + #fk>
                where #existing #(#bounds,)*
                {
                    #(#send_checks)*
                    static __FLOWKIT_OPTIONS: ::flowkit::TaskOptions = #options;
                    let __flowkit_inputs = #hash_inputs;
                    let __flowkit_recorded = #record_arguments;
                    ::flowkit::runtime::task(
                        &__FLOWKIT_OPTIONS,
                        ::flowkit::runtime::Body::new(#start, #retry_if),
                    )
                    .__durable(#codec, __flowkit_inputs)
                    .__arguments(__flowkit_recorded)
                }
            })
        }
        Kind::Flow => {
            let params = &sig.generics.params;
            let inputs = args.iter().map(|arg| {
                let (ident, ty, attrs) = (&arg.ident, &arg.ty, &arg.attrs);
                quote!(#(#attrs)* #ident: #ty)
            });
            let parameters = args.iter().map(|arg| {
                let ident = &arg.ident;
                let key = ident.to_string();
                let key = key.strip_prefix("r#").unwrap_or(&key).to_string();
                quote_spanned!(arg.ty.span()=> __flowkit_parameters.insert(
                    ::std::string::String::from(#key),
                    ::flowkit::__private::parameter(&#ident),
                );)
            });
            Ok(quote! {
                #(#attrs)*
                #vis fn #fn_name<#params>(#(#inputs),*)
                    -> ::flowkit::FlowCall<impl ::flowkit::runtime::FlowBody<Output = #output>>
                #where_clause
                {
                    #(#send_checks)*
                    static __FLOWKIT_OPTIONS: ::flowkit::FlowOptions = #options;
                    #[allow(unused_mut)]
                    let mut __flowkit_parameters = ::flowkit::__private::serde_json::Map::new();
                    #(#parameters)*
                    ::flowkit::runtime::flow(
                        &__FLOWKIT_OPTIONS,
                        ::flowkit::__private::serde_json::Value::Object(__flowkit_parameters),
                        #start,
                    )
                }
            })
        }
    }
}

/// The arguments of a task call as JSON, when they are recorded: always with
/// `record_arguments = true` (every argument must be `Serialize`: an error at the option names
/// the type that is not), never with `false`, else when the flow run records its tasks'
/// arguments (then an argument that is not `Serialize` is recorded by its type's name).
fn arguments_tokens(opts: &Options, args: &[Arg]) -> TokenStream {
    let key = |arg: &Arg| {
        let key = arg.ident.to_string();
        key.strip_prefix("r#").unwrap_or(&key).to_string()
    };
    match opts.record_arguments {
        Some((false, _)) => quote!(::core::option::Option::None),
        Some((true, span)) => {
            let records = args.iter().map(|arg| {
                // The argument named with the option's span, so that one that is not
                // `Serialize` is an error at `record_arguments`.
                let ident = Ident::new(&arg.ident.to_string(), span);
                let key = key(arg);
                quote_spanned!(span=> ::flowkit::__private::record_argument(&mut __flowkit_arguments, #key, &#ident);)
            });
            quote!({
                #[allow(unused_mut)]
                let mut __flowkit_arguments = ::flowkit::Arguments::new();
                #(#records)*
                ::core::option::Option::Some(__flowkit_arguments.finish())
            })
        }
        None => {
            let records = args.iter().map(|arg| {
                let ident = &arg.ident;
                let key = key(arg);
                quote!((&&::flowkit::__private::Argument(&#ident)).record_argument(#key, &mut __flowkit_arguments);)
            });
            quote!(
                if ::flowkit::__private::wants_arguments(&__FLOWKIT_OPTIONS) {
                    #[allow(unused_imports)]
                    use ::flowkit::__private::{RecordOpaque as _, RecordSerialize as _};
                    #[allow(unused_mut)]
                    let mut __flowkit_arguments = ::flowkit::Arguments::new();
                    #(#records)*
                    ::core::option::Option::Some(__flowkit_arguments.finish())
                } else {
                    ::core::option::Option::None
                }
            )
        }
    }
}

/// True if the success type, as written, holds a reference or a lifetime (`&'static str`,
/// `Row<'a>`): such a type is never persisted by default. (The probe cannot tell: trait
/// selection ignores lifetimes, so it would pick the serde codec, and `&'static str`, which is
/// `Deserialize<'de>` only for `'de: 'static`, would then fail to compile.)
fn ok_type_borrows(output: &Type) -> bool {
    // `output` is `Result<T, E>` (as written, or the wrapper the macro adds): look at `T`.
    let ok = match output {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .and_then(|last| match &last.arguments {
                syn::PathArguments::AngleBracketed(args) => {
                    args.args.iter().find_map(|arg| match arg {
                        syn::GenericArgument::Type(ty) => Some(ty.clone()),
                        _ => None,
                    })
                }
                _ => None,
            }),
        _ => None,
    };
    let Some(ok) = ok else {
        return false;
    };
    fn borrows(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|token| match token {
            proc_macro2::TokenTree::Punct(p) => p.as_char() == '&' || p.as_char() == '\'',
            proc_macro2::TokenTree::Group(g) => borrows(g.stream()),
            _ => false,
        })
    }
    borrows(ok.to_token_stream())
}

/// What a task call needs for persisting its result: the codec of its return type, and the
/// hash of its arguments when the task persists.
///
/// With `persist_result = true` or `cache_key`, the return type must be serializable, and with
/// `cache_key` so must every argument: the errors point at the option. Otherwise the codec and
/// the hash are taken where the types allow (autoref specialization), for flows whose tasks
/// persist by default.
fn durable_tokens(
    opts: &Options,
    args: &[Arg],
    output: &Type,
    opaque: bool,
) -> syn::Result<(TokenStream, TokenStream)> {
    let ok = quote!(<#output as ::flowkit::runtime::Outcome>::Ok);
    let required = match (opts.persist_result, opts.cache_key) {
        (Some((true, span)), _) => Some(("persist_result", span)),
        (_, Some(span)) => Some(("cache_key", span)),
        _ => None,
    };
    let codec = match required {
        Some((option, span)) if opaque => {
            return Err(syn::Error::new(
                span,
                format!("`{option}` needs a named return type to store it, not `impl Trait`"),
            ));
        }
        Some((_, span)) => {
            // The type comes from the `let`, so that the unmet bound is reported at the call,
            // which carries the option's span.
            let call = quote_spanned!(span=> ::flowkit::__private::codec());
            quote!({
                let __flowkit_codec: ::core::option::Option<::flowkit::Codec<#ok>> = #call;
                __flowkit_codec
            })
        }
        None if opaque
            || matches!(opts.persist_result, Some((false, _)))
            || ok_type_borrows(output) =>
        {
            quote!(::core::option::Option::None)
        }
        None => quote!({
            #[allow(unused_imports)]
            use ::flowkit::__private::{ProbeNone as _, ProbeSerde as _};
            (&&::flowkit::__private::Probe::<#ok>::new()).codec()
        }),
    };
    if matches!(opts.persist_result, Some((false, _))) && opts.cache_key.is_none() {
        return Ok((codec, quote!(::core::option::Option::None)));
    }
    let hashes: Vec<TokenStream> = match opts.cache_key {
        Some(span) => args
            .iter()
            .map(|arg| {
                // The argument named with the option's span: an argument that is not
                // `Serialize` is an error at `cache_key`, naming its type.
                let ident = Ident::new(&arg.ident.to_string(), span);
                quote_spanned!(span=> ::flowkit::__private::hash_argument(&mut __flowkit_hasher, &#ident);)
            })
            .collect(),
        None => args
            .iter()
            .map(|arg| {
                let ident = &arg.ident;
                quote!((&&::flowkit::__private::Input(&#ident)).hash_input(&mut __flowkit_hasher);)
            })
            .collect(),
    };
    let inputs = quote!(
        if ::flowkit::__private::wants_inputs(&__FLOWKIT_OPTIONS) {
            #[allow(unused_imports)]
            use ::flowkit::__private::{HashOpaque as _, HashSerialize as _};
            #[allow(unused_mut)]
            let mut __flowkit_hasher = ::flowkit::InputsHasher::new();
            #(#hashes)*
            ::core::option::Option::Some(__flowkit_hasher)
        } else {
            ::core::option::Option::None
        }
    );
    Ok((codec, inputs))
}
