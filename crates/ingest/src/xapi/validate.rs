//! The rules of the xAPI specification for a statement.
