//! Following the store's change feed.

use std::sync::Arc;

use nigrani_store::{Store, StoreError, StoredEvent};

/// Reads the events committed since it last looked, a page at a time, remembering the last
/// sequence number it saw. Because the store hands out sequence numbers in commit order, a
/// follower never skips an event and never sees one twice.
pub struct FeedFollower {
    store: Arc<dyn Store>,
    last_seq: i64,
    page_size: usize,
}

impl FeedFollower {
    /// A follower starting after `last_seq` (0 for the beginning).
    pub fn new(store: Arc<dyn Store>, last_seq: i64, page_size: usize) -> Self {
        Self {
            store,
            last_seq,
            page_size: page_size.max(1),
        }
    }

    /// The last sequence number handed out.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// The next page of new events; empty when caught up.
    pub async fn next_page(&mut self) -> Result<Vec<StoredEvent>, StoreError> {
        let page = self
            .store
            .events_after(self.last_seq, self.page_size)
            .await?;
        if let Some(last) = page.last() {
            self.last_seq = last.seq;
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use nigrani_domain::event::content_hash;
    use nigrani_domain::{EventKind, LearnerRef, LearningEvent};
    use nigrani_store::sqlite::SqliteStore;

    use super::*;

    fn event(id: usize) -> LearningEvent {
        let raw = serde_json::json!({ "id": id });
        LearningEvent {
            source: "coursera".into(),
            event_id: id.to_string(),
            learner: LearnerRef::parse("coursera:a").unwrap(),
            course_id: "c".into(),
            kind: EventKind::Started,
            progress: None,
            score: None,
            duration_seconds: None,
            occurred_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            content_hash: content_hash(&raw),
            raw: raw.to_string(),
        }
    }

    #[tokio::test]
    async fn a_follower_sees_each_event_once_in_commit_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store.migrate().await.unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let mut follower = FeedFollower::new(Arc::clone(&store), 0, 3);
        assert!(follower.next_page().await.unwrap().is_empty());

        let now = Utc::now();
        let first: Vec<_> = (0..5).map(event).collect();
        store.write_batch(&first, &[], now).await.unwrap();
        let mut seen = Vec::new();
        loop {
            let page = follower.next_page().await.unwrap();
            if page.is_empty() {
                break;
            }
            seen.extend(page.into_iter().map(|e| e.event.event_id));
        }
        // A replay adds nothing to the feed; new events follow on.
        store.write_batch(&first, &[], now).await.unwrap();
        store.write_batch(&[event(5)], &[], now).await.unwrap();
        seen.extend(
            follower
                .next_page()
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.event.event_id),
        );
        assert_eq!(seen, ["0", "1", "2", "3", "4", "5"]);
        assert!(follower.next_page().await.unwrap().is_empty());
    }
}
