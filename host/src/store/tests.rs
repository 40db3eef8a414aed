use super::*;

fn row(id: &str, phase: &str) -> SessionRow {
    SessionRow {
        id: id.into(),
        call_id: format!("call-{id}"),
        local_tag: format!("tag-{id}"),
        phase: phase.into(),
        invite: Some(b"INVITE mailto:bob@example.net SIP/2.0\r\n\r\n\xff".to_vec()),
        state: format!("{{\"id\":\"{id}\"}}"),
        expires_at: Some(1_800_000_000_000),
    }
}

/// Changes saving session `id` (again).
fn row_saved(id: &str) -> Changes {
    Changes {
        saved: vec![row(id, "live")],
        ..Changes::default()
    }
}

fn in_folder(folder: &Path) -> StoreSettings {
    StoreSettings {
        path: Some(folder.to_path_buf()),
        ..StoreSettings::default()
    }
}

#[tokio::test]
async fn a_commit_survives_reopening_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("state"); // created on first run
    {
        let store = Store::open(&in_folder(&folder)).await.unwrap();
        let changes = Changes {
            saved: vec![row("a", "invited"), row("b", "live")],
            forgotten: vec![],
            threads: vec![("a".into(), "{\"sent\":[]}".into())],
        };
        store.commit(&changes).await.unwrap();
        let changes = Changes {
            saved: vec![SessionRow {
                invite: None, // a later save: the row has the INVITE
                expires_at: None,
                ..row("a", "live")
            }],
            forgotten: vec!["b".into()],
            threads: vec![],
        };
        store.commit(&changes).await.unwrap();
    }
    assert!(folder.join(DATABASE_FILE).is_file());
    let store = Store::open(&in_folder(&folder)).await.unwrap();
    let sessions = store.sessions().await.unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].phase, "live");
    assert_eq!(sessions[0].expires_at, None);
    assert_eq!(
        sessions[0].invite,
        row("a", "").invite,
        "bytes kept as they were"
    );
    let threads = store.threads().await.unwrap();
    assert_eq!(threads.get("a").map(String::as_str), Some("{\"sent\":[]}"));
}

#[tokio::test]
async fn forgetting_a_session_drops_its_thread_and_orphans_go_at_load() {
    let store = Store::open(&StoreSettings::memory()).await.unwrap();
    assert_eq!(store.location(), ":memory:");
    let saved = Changes {
        saved: vec![row("a", "invited")],
        forgotten: vec![],
        threads: vec![],
    };
    store.commit(&saved).await.unwrap();
    let threads = Changes {
        threads: vec![("a".into(), "{}".into()), ("orphan".into(), "{}".into())],
        ..Changes::default()
    };
    store.commit(&threads).await.unwrap();
    let threads = store.threads().await.unwrap();
    assert_eq!(threads.keys().collect::<Vec<_>>(), vec!["a"]);
    let forgotten = Changes {
        saved: vec![],
        forgotten: vec!["a".into()],
        threads: vec![],
    };
    store.commit(&forgotten).await.unwrap();
    assert!(store.sessions().await.unwrap().is_empty());
    assert!(store.threads().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_folder_that_cannot_be_made_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let Err(e) = Store::open(&in_folder(&file.join("state"))).await else {
        panic!("a folder under a file was opened");
    };
    let text = e.to_string();
    assert!(text.starts_with("[store] path = "), "{text}");
    assert!(text.contains("cannot create the folder"), "{text}");
}

#[tokio::test]
async fn commits_are_timed_for_the_metric() {
    let store = Store::open(&StoreSettings::memory()).await.unwrap();
    store.commit(&Changes::default()).await.unwrap(); // nothing to commit: not counted
    let saved = Changes {
        saved: vec![row("a", "invited")],
        forgotten: vec![],
        threads: vec![],
    };
    store.commit(&saved).await.unwrap();
    let mut out = String::new();
    store.render_metrics(&mut out);
    assert!(
        out.contains("iwf_store_commit_seconds_count{store=\"sqlite\"} 1"),
        "{out}"
    );
}

#[tokio::test]
async fn closing_commits_what_was_queued_before() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&in_folder(dir.path())).await.unwrap();
        store.commit(&row_saved("a")).await.unwrap();
        store.spool(spooled("a", "m2", 1)).await.unwrap();
        store.unspool(Unspooled {
            session_id: "a".into(),
            msrp_message_id: "m2".into(),
            thread: None,
        }); // queued, not waited for
        store.close().await;
    }
    let store = Store::open(&in_folder(dir.path())).await.unwrap();
    assert!(store.spooled().await.unwrap().is_empty());
}

fn spooled(session: &str, id: &str, seq: i64) -> SpooledChat {
    SpooledChat {
        session_id: session.into(),
        msrp_message_id: id.into(),
        seq,
        content_type: "text/plain".into(),
        body: format!("text of {id}").into_bytes(),
        mail_nonce: format!("nonce-{id}"),
        give_up_at: 1_800_000_000_000,
    }
}

fn forget(id: &str) -> Changes {
    Changes {
        forgotten: vec![id.into()],
        ..Changes::default()
    }
}

#[tokio::test]
async fn spooled_chats_come_back_in_order_after_reopening_and_a_message_id_is_spooled_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&in_folder(dir.path())).await.unwrap();
        store.commit(&row_saved("a")).await.unwrap();
        store.spool(spooled("a", "m2", 2)).await.unwrap();
        store.spool(spooled("a", "m1", 1)).await.unwrap();
        // The same Message-ID again (a SEND taken twice): the first row stays.
        let again = SpooledChat {
            body: b"other".to_vec(),
            ..spooled("a", "m1", 3)
        };
        store.spool(again).await.unwrap();
    }
    let store = Store::open(&in_folder(dir.path())).await.unwrap();
    assert_eq!(store.spool_depth().await.unwrap(), 2);
    let back = store.spooled().await.unwrap();
    assert_eq!(back, vec![spooled("a", "m1", 1), spooled("a", "m2", 2)]);
    store.unspool(Unspooled {
        session_id: "a".into(),
        msrp_message_id: "m1".into(),
        thread: Some("{\"sent\":[\"x\"]}".into()),
    });
    store.close().await;
    let store = Store::open(&in_folder(dir.path())).await.unwrap();
    assert_eq!(store.spooled().await.unwrap(), vec![spooled("a", "m2", 2)]);
    assert_eq!(
        store.threads().await.unwrap().get("a").map(String::as_str),
        Some("{\"sent\":[\"x\"]}"),
        "the thread as the mail left it"
    );
}

#[tokio::test]
async fn a_session_freed_with_chats_spooled_stays_closed_until_its_last_one_is_unspooled() {
    let store = Store::open(&StoreSettings::memory()).await.unwrap();
    let saved = Changes {
        saved: vec![row("a", "live"), row("b", "live")],
        threads: vec![("a".into(), "{}".into()), ("b".into(), "{}".into())],
        ..Changes::default()
    };
    store.commit(&saved).await.unwrap();
    store.spool(spooled("a", "m1", 1)).await.unwrap();
    store.spool(spooled("a", "m2", 2)).await.unwrap();
    let both = Changes {
        forgotten: vec!["a".into(), "b".into()],
        ..Changes::default()
    };
    store.commit(&both).await.unwrap();
    // b had nothing spooled: gone; a stays, closed, with its thread.
    let sessions = store.sessions().await.unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(
        (sessions[0].id.as_str(), sessions[0].phase.as_str()),
        ("a", CLOSED)
    );
    assert!(store.threads().await.unwrap().contains_key("a"));
    for id in ["m1", "m2"] {
        store.unspool(Unspooled {
            session_id: "a".into(),
            msrp_message_id: id.into(),
            thread: Some("{\"after\":true}".into()),
        });
        store.commit(&forget("nobody")).await.unwrap(); // behind the queued: flushed
        let left = store.sessions().await.unwrap().len();
        assert_eq!(left, usize::from(id == "m1"), "after {id}");
    }
    assert!(
        store.threads().await.unwrap().is_empty(),
        "no orphan thread"
    );
    assert_eq!(store.spool_depth().await.unwrap(), 0);
    // A live session's last message unspooled: the session stays.
    store.commit(&row_saved("c")).await.unwrap();
    store.spool(spooled("c", "m1", 1)).await.unwrap();
    store.unspool(Unspooled {
        session_id: "c".into(),
        msrp_message_id: "m1".into(),
        thread: None,
    });
    store.commit(&forget("nobody")).await.unwrap();
    assert_eq!(store.sessions().await.unwrap().len(), 1);
}
