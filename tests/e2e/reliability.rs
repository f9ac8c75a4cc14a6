//! Nothing acknowledged is ever lost: a server killed with SIGKILL while clients stream batches
//! keeps every acknowledged event exactly once; SIGTERM lets batches in flight commit; a database
//! that goes away turns into 503 `store_unavailable` and nothing is acknowledged that was not
//! stored. Each on both backends where it applies.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nigrani_e2e::{Data, TestServer, event, ndjson};
use nigrani_store::testing::TestDatabase;
use serde_json::Value;

const CLIENTS: usize = 3;
const BATCH: usize = 200;

/// Streams batches from `CLIENTS` threads until `stop`; returns the ids each acknowledged
/// response reported as stored, and the batches that got no answer.
fn stream_batches(server: &TestServer, stop: &AtomicBool) -> (Vec<String>, Vec<Vec<Value>>) {
    let acked = Mutex::new(Vec::new());
    let unanswered = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (acked, unanswered) = (&acked, &unanswered);
            scope.spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let batch: Vec<Value> = (0..BATCH)
                        .map(|i| event(&format!("k{client}-{n}-{i}"), "coursera:streamer"))
                        .collect();
                    n += 1;
                    match server.try_post("/api/v1/events", "application/x-ndjson", ndjson(&batch))
                    {
                        Ok((200, report)) => {
                            let results = report["results"].as_array().unwrap();
                            assert_eq!(results.len(), BATCH);
                            let mut acked = acked.lock().unwrap();
                            for result in results {
                                assert!(matches!(
                                    result["outcome"].as_str(),
                                    Some("accepted" | "unmatched")
                                ));
                                acked.push(result["event_id"].as_str().unwrap().to_owned());
                            }
                        }
                        Ok((status, body)) => panic!("unexpected {status}: {body}"),
                        Err(_) => {
                            unanswered.lock().unwrap().push(batch);
                            thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            });
        }
    });
    (
        acked.into_inner().unwrap(),
        unanswered.into_inner().unwrap(),
    )
}

async fn stored_ids(server: &TestServer) -> HashMap<String, usize> {
    let store = server.store().await;
    let mut counts = HashMap::new();
    let mut after = 0;
    loop {
        let page = store.events_after(after, 10_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for stored in page {
            *counts.entry(stored.event.event_id).or_insert(0) += 1;
        }
    }
    counts
}

async fn killed_mid_stream_keeps_every_acknowledged_event(mut server: TestServer) {
    let stop = AtomicBool::new(false);
    let (acked, unanswered) = thread::scope(|scope| {
        let streaming = scope.spawn(|| stream_batches(&server, &stop));
        thread::sleep(Duration::from_millis(1500));
        // SIGKILL: no shutdown hook runs, batches in flight die with the process.
        let pid = server.pid();
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        streaming.join().unwrap()
    });
    server.kill(); // reap the killed process
    assert!(
        acked.len() >= BATCH,
        "the clients got answers before the kill"
    );

    server.restart();
    let stored = stored_ids(&server).await;
    for id in &acked {
        assert_eq!(
            stored.get(id),
            Some(&1),
            "acknowledged event {id} stored exactly once"
        );
    }

    // A client retries what got no answer: events stored before the kill come back as
    // duplicates, the rest are stored now; nothing is stored twice.
    for batch in &unanswered {
        let (status, report) = server.post("/api/v1/events", "application/x-ndjson", ndjson(batch));
        assert_eq!(status, 200);
        for result in report["results"].as_array().unwrap() {
            assert!(matches!(
                result["outcome"].as_str(),
                Some("accepted" | "unmatched" | "duplicate")
            ));
        }
    }
    let stored = stored_ids(&server).await;
    let sent: HashSet<String> = acked
        .iter()
        .cloned()
        .chain(
            unanswered
                .iter()
                .flatten()
                .map(|e| e["event_id"].as_str().unwrap().to_owned()),
        )
        .collect();
    assert!(stored.values().all(|n| *n == 1));
    assert_eq!(stored.len(), sent.len(), "every event sent is stored, once");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_streaming_on_sqlite() {
    killed_mid_stream_keeps_every_acknowledged_event(TestServer::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_streaming_on_postgres() {
    if let Some(server) = TestServer::postgres("sigkill") {
        killed_mid_stream_keeps_every_acknowledged_event(server).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_batches_in_flight_commit() {
    let mut server = TestServer::sqlite();
    let stop = AtomicBool::new(false);
    let acked = thread::scope(|scope| {
        let streaming = scope.spawn(|| stream_batches(&server, &stop));
        thread::sleep(Duration::from_millis(800));
        let pid = server.pid();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        streaming.join().unwrap().0
    });
    let exit = server.terminate_reap();
    assert!(exit.success(), "nigrani exits cleanly on SIGTERM: {exit:?}");
    server.restart();
    let stored = stored_ids(&server).await;
    for id in &acked {
        assert_eq!(stored.get(id), Some(&1));
    }
}

/// A TCP forwarder between nigrani and PostgreSQL that a test can cut and restore, to play a
/// database that goes away and comes back.
struct Link {
    port: u16,
    upstream: String,
    up: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl Link {
    fn new(upstream: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut link = Self {
            port,
            upstream: upstream.to_owned(),
            up: Arc::new(AtomicBool::new(false)),
            sockets: Arc::new(Mutex::new(Vec::new())),
            acceptor: None,
        };
        link.restore();
        link
    }

    fn restore(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.up.store(true, Ordering::SeqCst);
        let (up, sockets, upstream) = (
            Arc::clone(&self.up),
            Arc::clone(&self.sockets),
            self.upstream.clone(),
        );
        self.acceptor = Some(thread::spawn(move || {
            while up.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(&upstream) else {
                            continue;
                        };
                        let mut all = sockets.lock().unwrap();
                        all.push(client.try_clone().unwrap());
                        all.push(server.try_clone().unwrap());
                        for (mut from, mut to) in [
                            (client.try_clone().unwrap(), server.try_clone().unwrap()),
                            (server, client),
                        ] {
                            thread::spawn(move || {
                                let mut buffer = [0u8; 16 * 1024];
                                while let Ok(n) = from.read(&mut buffer) {
                                    if n == 0 || to.write_all(&buffer[..n]).is_err() {
                                        break;
                                    }
                                }
                                let _ = to.shutdown(Shutdown::Both);
                            });
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
    }

    fn cut(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.join().unwrap();
        }
        for socket in self.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_goes_away_gets_503_and_nothing_is_acknowledged() {
    let Some(db) = TestDatabase::create("db_down") else {
        return;
    };
    let url = db.url().to_owned();
    let (host_port, rest) = {
        let after_at = url.rsplit_once('@').map_or(url.as_str(), |(_, r)| r);
        let (host_port, rest) = after_at.split_once('/').unwrap();
        (host_port.to_owned(), rest.to_owned())
    };
    let mut link = Link::new(&host_port);
    let proxied = url.replace(
        &format!("{host_port}/{rest}"),
        &format!("127.0.0.1:{}/{rest}", link.port),
    );
    let server = TestServer::start(
        Data::Postgres(db),
        &[
            ("NIGRANI_DATABASE_URL", proxied.as_str()),
            ("NIGRANI_CONNECT_TIMEOUT_SECS", "1"),
        ],
    );
    let first: Vec<Value> = (0..5)
        .map(|i| event(&format!("before-{i}"), "coursera:a"))
        .collect();
    assert_eq!(
        server
            .post("/api/v1/events", "application/x-ndjson", ndjson(&first))
            .0,
        200
    );

    link.cut();
    let lost: Vec<Value> = (0..5)
        .map(|i| event(&format!("during-{i}"), "coursera:a"))
        .collect();
    let started = Instant::now();
    let (status, error) = server.post("/api/v1/events", "application/x-ndjson", ndjson(&lost));
    assert_eq!(
        (status, error["code"].as_str()),
        (503, Some("store_unavailable")),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answers within the connect timeout"
    );
    let (status, body) = server.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(server.get("/healthz").0, 200, "the process itself is alive");

    link.restore();
    let after: Vec<Value> = (0..5)
        .map(|i| event(&format!("after-{i}"), "coursera:a"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = server.post("/api/v1/events", "application/x-ndjson", ndjson(&after));
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nigrani recovers once the database is back"
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(server.get("/readyz").0, 200);
    let stored = stored_ids(&server).await;
    assert!(
        stored.keys().all(|id| !id.starts_with("during-")),
        "the refused batch was not stored"
    );
    assert_eq!(stored.len(), 10);
}
