//! What can go wrong in analytics: the store failed, or the query could not be answered.

use nigrani_store::StoreError;

use crate::frame::QueryError;

/// What can go wrong in analytics.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Query(#[from] QueryError),
}
