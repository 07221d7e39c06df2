//! `#[derive(Module)]`: a model's named state and train / eval switching,
//! generated from its fields, so that no model can forget to forward
//! `set_training` to a child (which would leave BatchNorm or Dropout in the
//! wrong mode without a word).
//!
//! Each field takes part through `deepgen_nn::ModuleField`: a `Var` is a
//! parameter, a child module is visited under the field's name (`fc1.weight`,
//! as PyTorch names attributes), `Option` children count when present, `Vec`
//! children are numbered like `nn.ModuleList` (`layers.0.weight`), an
//! `AtomicI64` is a counter, and plain numbers, flags and strings are
//! ignored. Attributes (`#[module(...)]`) change that per field:
//!
//! - `skip`: not part of the state (a config struct, a cache);
//! - `rename = "name"`: the state's name differs from the field's;
//! - `flatten`: the field's children are named without a prefix (how
//!   `Sequential` names its layers `0`, `1`, ...);
//! - `buffer`: a `Var` (or `Option<Var>`) that is state but not learnable
//!   (BatchNorm's `running_mean`);
//! - `training`: an `AtomicBool` that `set_training` sets.
//!
//! The impl is generic over the element type `__T` with one bound per field
//! (`FieldType: ModuleField<__T>`), so a struct of `Linear<f32>` fields is a
//! `Module<f32>`, a struct generic over `T` is a `Module<T>`, and a struct of
//! no state is a module of every element type.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote};
use syn::{parse_macro_input, Data, DeriveInput, Fields, LitStr};

/// Implements `deepgen_nn::Module` (and `deepgen_nn::ModuleField`, so the
/// struct can be a field of another) from the struct's fields.
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// How one field takes part.
#[derive(Default)]
struct FieldAttrs {
    skip: bool,
    flatten: bool,
    buffer: bool,
    training: bool,
    rename: Option<String>,
}

fn field_attrs(field: &syn::Field) -> syn::Result<FieldAttrs> {
    let mut a = FieldAttrs::default();
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                a.skip = true;
            } else if meta.path.is_ident("flatten") {
                a.flatten = true;
            } else if meta.path.is_ident("buffer") {
                a.buffer = true;
            } else if meta.path.is_ident("training") {
                a.training = true;
            } else if meta.path.is_ident("rename") {
                a.rename = Some(meta.value()?.parse::<LitStr>()?.value());
            } else {
                return Err(meta
                    .error("expected one of skip, flatten, buffer, training, rename = \"name\""));
            }
            Ok(())
        })?;
    }
    let kinds = [a.skip, a.flatten, a.buffer, a.training]
        .iter()
        .filter(|&&k| k)
        .count();
    if kinds > 1 || (a.rename.is_some() && (a.skip || a.flatten || a.training)) {
        return Err(syn::Error::new_spanned(
            field,
            "a field is one of skip, flatten, buffer or training (rename goes with a plain or buffer field)",
        ));
    }
    Ok(a)
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            input,
            "#[derive(Module)] works on structs; implement deepgen_nn::Module by hand for enums",
        ));
    };
    let fields: Vec<(Tokens, String, &syn::Field)> = match &data.fields {
        Fields::Named(named) => named
            .named
            .iter()
            .map(|f| {
                let ident = f.ident.clone().expect("named field");
                let name = ident.to_string();
                (quote!(#ident), name.trim_start_matches("r#").to_string(), f)
            })
            .collect(),
        Fields::Unnamed(unnamed) => unnamed
            .unnamed
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let index = syn::Index::from(i);
                (quote!(#index), i.to_string(), f)
            })
            .collect(),
        Fields::Unit => Vec::new(),
    };

    let nn = quote!(::deepgen_nn);
    let elem = format_ident!("__T");
    let mut visits = Vec::new();
    let mut trainings = Vec::new();
    let mut bounds = Vec::new();
    for (access, name, field) in &fields {
        let a = field_attrs(field)?;
        let ty = &field.ty;
        let name = a.rename.clone().unwrap_or_else(|| name.clone());
        if a.skip {
            continue;
        }
        if a.training {
            trainings.push(quote!(#nn::module::TrainingFlag::set_flag(&self.#access, __training);));
            continue;
        }
        if a.buffer {
            bounds.push(quote!(#ty: #nn::module::BufferField<#elem>));
            visits.push(
                quote!(#nn::module::BufferField::<#elem>::visit_buffer(&self.#access, #name, __f);),
            );
            continue;
        }
        let name = if a.flatten { String::new() } else { name };
        bounds.push(quote!(#ty: #nn::ModuleField<#elem>));
        visits.push(quote!(#nn::ModuleField::<#elem>::visit_field(&self.#access, #name, __f);));
        trainings.push(
            quote!(#nn::ModuleField::<#elem>::set_training_field(&self.#access, __training);),
        );
    }

    let ident = &input.ident;
    let mut generics = input.generics.clone();
    generics.params.push(syn::parse_quote!(#elem: #nn::Element));
    let (impl_generics, _, _) = generics.split_for_impl();
    let (_, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut predicates: Vec<Tokens> = where_clause
        .map(|w| w.predicates.iter().map(|p| quote!(#p)).collect())
        .unwrap_or_default();
    predicates.extend(bounds);
    let visit_arg = if visits.is_empty() {
        quote!(_)
    } else {
        quote!(__f)
    };
    let training_arg = if trainings.is_empty() {
        quote!(_)
    } else {
        quote!(__training)
    };
    Ok(quote! {
        impl #impl_generics #nn::Module<#elem> for #ident #ty_generics
        where
            Self: ::core::marker::Send + ::core::marker::Sync,
            #(#predicates,)*
        {
            fn visit(&self, #visit_arg: &mut dyn FnMut(&str, #nn::Slot<'_, #elem>)) {
                #(#visits)*
            }

            fn set_training(&self, #training_arg: bool) {
                #(#trainings)*
            }
        }

        impl #impl_generics #nn::ModuleField<#elem> for #ident #ty_generics
        where
            Self: #nn::Module<#elem>,
            #(#predicates,)*
        {
            fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, #nn::Slot<'_, #elem>)) {
                #nn::module::visit_child(name, self, f);
            }

            fn set_training_field(&self, training: bool) {
                #nn::Module::<#elem>::set_training(self, training);
            }
        }
    })
}
