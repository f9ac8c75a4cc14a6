//! Schemas of the OpenAPI document that no Rust type of the wire carries: the shapes of answers
//! built as JSON values, and the choices of text parameters, listed from the code's own tables
//! so that the document cannot drift from what the handlers accept.
//!
//! Documentation only: handlers never read these types. The module sits below every module
//! that documents routes and imports none of them.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::{PartialSchema, ToSchema};

/// A text parameter that takes one of `values`; with `empty`, an empty value too (it means the
/// parameter was not given).
pub(crate) fn choices<'a>(
    values: impl IntoIterator<Item = &'a str>,
    empty: bool,
    description: &str,
) -> RefOr<Schema> {
    let values: Vec<&str> = empty.then_some("").into_iter().chain(values).collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .description(Some(description))
        .into()
}

/// Declares a documentation-only schema type whose schema is the expression given.
macro_rules! schema_type {
    ($(#[$doc:meta])* $name:ident => $schema:expr) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $schema
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}
pub(crate) use schema_type;

fn object() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Object)
}

/// A JSON array of objects: the rows of an answer.
pub(crate) struct Rows;

impl PartialSchema for Rows {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(object())
            .description(Some("Rows, each a JSON object"))
            .into()
    }
}

impl ToSchema for Rows {}

/// An answer that is an object, or with `format=rows` only its rows as a flat array.
pub(crate) struct ObjectOrRows;

impl PartialSchema for ObjectOrRows {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(object())
            .item(Rows::schema())
            .description(Some(
                "The answer as an object; with `format=rows`, only its rows as a flat array (for \
                 Grafana's Infinity datasource)",
            ))
            .into()
    }
}

impl ToSchema for ObjectOrRows {}

/// Any JSON value: a body the route reads leniently (or not at all).
pub(crate) struct AnyJson;

impl PartialSchema for AnyJson {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::AnyValue)
            .description(Some("Any JSON value"))
            .into()
    }
}

impl ToSchema for AnyJson {}
