//! A model test of the queue: random sequences of enqueue, claim,
//! progress, complete, fail, cancel and crash (close and reopen without
//! any cleanup), checking the invariants against a simple model after
//! every step, and that every committed change was published: the last
//! change a subscriber saw of each operation and package is what the
//! store holds. The model has its own transition table: it does not ask
//! the code under test what a status may become.

use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;
use crate::domain::package::{PackageName, PackageVersion, Status};
use crate::store::{NewPackage, StoreOptions};

/// The transitions the API promises (README: Operations), written out again for the
/// model: download created -> downloaded, activate downloaded -> active,
/// deactivate active -> downloaded.
fn model_transition(kind: OperationKind, from: Status) -> Option<Status> {
    match (kind, from) {
        (OperationKind::Download, Status::Created) => Some(Status::Downloaded),
        (OperationKind::Activate, Status::Downloaded) => Some(Status::Active),
        (OperationKind::Deactivate, Status::Active) => Some(Status::Downloaded),
        _ => None,
    }
}

/// What a subscriber saw last of each operation and package.
#[derive(Default)]
struct Seen {
    operations: HashMap<Uuid, Operation>,
    packages: HashMap<Uuid, crate::domain::package::Package>,
}

impl Seen {
    fn drain(
        &mut self,
        rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<events::Committed>>,
    ) {
        loop {
            match rx.try_recv() {
                Ok(change) => match &*change {
                    events::Committed::Operation(op) => {
                        self.operations.insert(op.id, op.clone());
                    }
                    events::Committed::Package(p) => {
                        self.packages.insert(p.id, p.clone());
                    }
                    events::Committed::PackageDeleted(id) => {
                        self.packages.remove(id);
                    }
                    // The model makes no channel.
                    events::Committed::Channel(_) | events::Committed::ChannelDeleted(_) => {}
                },
                Err(tokio::sync::broadcast::error::TryRecvError::Empty) => return,
                Err(e) => panic!("the subscriber lost changes: {e}"),
            }
        }
    }
}

struct Model {
    status: HashMap<Uuid, Status>,
    /// Packages share names two by two, so activations displace.
    name: HashMap<Uuid, usize>,
    in_flight: HashMap<Uuid, Uuid>,
    kinds: HashMap<Uuid, OperationKind>,
    progress: HashMap<Uuid, u8>,
}

impl Model {
    /// Another version of `pkg`'s name has an activate or deactivate in flight.
    fn name_busy(&self, pkg: Uuid) -> bool {
        self.in_flight.iter().any(|(other, op)| {
            *other != pkg
                && self.name[other] == self.name[&pkg]
                && self.kinds[op] != OperationKind::Download
        })
    }

    fn succeeded(&mut self, pkg: Uuid, kind: OperationKind) {
        let to = model_transition(kind, self.status[&pkg]).expect("valid when enqueued");
        if to == Status::Active {
            let name = self.name[&pkg];
            for (other, status) in self.status.iter_mut() {
                if self.name[other] == name && *status == Status::Active {
                    *status = Status::Downloaded;
                }
            }
        }
        self.status.insert(pkg, to);
    }
}

fn check(store: &Store, model: &Model, after_crash: bool, seen: &Seen) {
    let ops = store
        .list_operations(&ListOperations {
            limit: 100_000,
            ..Default::default()
        })
        .unwrap()
        .items;
    for o in &ops {
        assert_eq!(
            seen.operations.get(&o.id),
            Some(o),
            "an operation changed and no change was published"
        );
    }
    for pkg in model.status.keys() {
        let p = store.get_package(*pkg).unwrap();
        assert_eq!(
            seen.packages.get(pkg),
            Some(&p),
            "a package changed and no change was published"
        );
    }
    let queued_in_table: HashSet<u128> = store
        .read(|rtx| {
            let t = rtx.open_table(OPERATIONS_QUEUE)?;
            t.iter()?
                .map(|r| r.map(|(k, _)| k.value().1).map_err(StoreError::from))
                .collect()
        })
        .unwrap();
    let queued_ops: HashSet<u128> = ops
        .iter()
        .filter(|o| o.state == OperationState::Queued)
        .map(|o| o.id.as_u128())
        .collect();
    assert_eq!(
        queued_in_table, queued_ops,
        "queue table == queued operations"
    );
    let mut active_names = HashSet::new();
    for (pkg, status) in &model.status {
        let p = store.get_package(*pkg).unwrap();
        if p.status == Status::Active {
            assert!(active_names.insert(p.name.clone()), "one active per name");
        }
        assert_eq!(p.status, *status, "a status changed without a success");
        let open: Vec<&Operation> = ops
            .iter()
            .filter(|o| o.package_id == *pkg && !o.state.is_finished())
            .collect();
        assert!(open.len() <= 1, "one operation per package at a time");
        assert_eq!(p.operation_id, open.first().map(|o| o.id));
        assert_eq!(p.operation_id, model.in_flight.get(pkg).copied());
    }
    for o in &ops {
        if after_crash {
            assert_ne!(o.state, OperationState::Running, "nothing stays running");
        }
        let seen = model.progress.get(&o.id).copied().unwrap_or(0);
        assert!(o.progress >= seen, "progress never goes back");
    }
}

async fn run(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.redb");
    let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
    let mut rx = store.subscribe();
    let mut seen = Seen::default();
    let mut model = Model {
        status: HashMap::new(),
        name: HashMap::new(),
        in_flight: HashMap::new(),
        kinds: HashMap::new(),
        progress: HashMap::new(),
    };
    let mut pkgs = Vec::new();
    for i in 0..6 {
        let p = store
            .create_package(NewPackage {
                name: PackageName::parse(format!("p{}", i / 2)).unwrap(),
                version: PackageVersion::parse(format!("{i}")).unwrap(),
                source: None,
            })
            .await
            .unwrap();
        model.status.insert(p.id, Status::Created);
        model.name.insert(p.id, i / 2);
        pkgs.push(p.id);
    }
    let mut running: Vec<Operation> = Vec::new();
    let mut all_ops: Vec<Uuid> = Vec::new();
    for _ in 0..300 {
        let mut after_crash = false;
        match rng.random_range(0..100) {
            0..30 => {
                let pkg = pkgs[rng.random_range(0..pkgs.len())];
                let kind = OperationKind::ALL[rng.random_range(0..3)];
                let expect_ok = !model.in_flight.contains_key(&pkg)
                    && model_transition(kind, model.status[&pkg]).is_some()
                    && (kind == OperationKind::Download || !model.name_busy(pkg));
                match store.enqueue(pkg, kind, None).await {
                    Ok((op, true)) => {
                        assert!(expect_ok);
                        model.in_flight.insert(pkg, op.id);
                        model.kinds.insert(op.id, kind);
                        all_ops.push(op.id);
                    }
                    Ok((_, false)) => unreachable!("no idempotency key"),
                    Err(StoreError::Refused(Refusal::OperationInProgress { .. }))
                    | Err(StoreError::Refused(Refusal::InvalidTransition { .. }))
                    | Err(StoreError::Refused(Refusal::NameBusy { .. })) => {
                        assert!(!expect_ok)
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            30..50 => {
                if let Claim::Work(op) = store.claim().await.unwrap() {
                    assert_eq!(op.state, OperationState::Running);
                    running.push(op);
                }
            }
            50..65 if !running.is_empty() => {
                let i = rng.random_range(0..running.len());
                let id = running[i].id;
                let p = model.progress.get(&id).copied().unwrap_or(0);
                let next = (p + rng.random_range(1..30)).min(99);
                match store.save_progress(id, next, None).await.unwrap() {
                    Continue::Yes => {
                        model.progress.insert(id, next);
                    }
                    Continue::Cancelled => {
                        let op = running.remove(i);
                        model.in_flight.remove(&op.package_id);
                    }
                }
            }
            65..75 if !running.is_empty() => {
                let op = running.remove(rng.random_range(0..running.len()));
                // Half the completions also claim the next operation.
                let claim_next = rng.random_bool(0.5);
                let (done, next) = store
                    .complete(
                        op.id,
                        None,
                        if claim_next {
                            AndThen::ClaimNext
                        } else {
                            AndThen::Stop
                        },
                    )
                    .await
                    .unwrap();
                if done.state == OperationState::Succeeded {
                    model.succeeded(op.package_id, op.kind);
                    model.progress.insert(op.id, 100);
                }
                model.in_flight.remove(&op.package_id);
                assert_eq!(next.is_some(), claim_next);
                if let Some(Claim::Work(next)) = next {
                    assert_eq!(next.state, OperationState::Running);
                    running.push(next);
                }
            }
            75..85 if !running.is_empty() => {
                let op = running.remove(rng.random_range(0..running.len()));
                let after = store
                    .fail_attempt(op.id, "boom".into(), 2, Duration::ZERO)
                    .await
                    .unwrap();
                if after.state.is_finished() {
                    model.in_flight.remove(&op.package_id);
                }
            }
            85..95 if !all_ops.is_empty() => {
                let id = all_ops[rng.random_range(0..all_ops.len())];
                match store.cancel_operation(id).await {
                    Ok(op) if op.state == OperationState::Cancelled => {
                        model.in_flight.remove(&op.package_id);
                    }
                    Ok(op) => assert!(op.cancel_requested),
                    Err(StoreError::Refused(Refusal::AlreadyFinished(_))) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            95..100 => {
                // Crash: no requeue, no cleanup; the next open recovers.
                store.close();
                drop(store);
                store = Store::open(&path, &StoreOptions::default()).unwrap();
                rx = store.subscribe();
                store.recover_operations().await.unwrap();
                for op in running.drain(..) {
                    let now = store.get_operation(op.id).unwrap();
                    if now.state == OperationState::Cancelled {
                        model.in_flight.remove(&op.package_id);
                    }
                }
                after_crash = true;
            }
            _ => {}
        }
        seen.drain(&mut rx);
        check(&store, &model, after_crash, &seen);
    }
    store.close();
}

#[tokio::test]
async fn queue_keeps_its_invariants_under_random_sequences() {
    for seed in 0..6 {
        run(seed).await;
    }
}

/// A write queued while nobody listened, committed after someone began
/// to: the subscriber must hear of it, or a client that subscribes and
/// then reads (seeing the state before that commit) waits forever.
#[tokio::test]
async fn a_subscriber_hears_of_a_write_queued_before_it_came() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("late.redb"), &StoreOptions::default()).unwrap();
    let p = store
        .create_package(NewPackage {
            name: PackageName::parse("late").unwrap(),
            version: PackageVersion::parse("1").unwrap(),
            source: None,
        })
        .await
        .unwrap();
    // The writer is held by a job that waits for us, and the enqueue is
    // queued behind it (each future polled once: far enough to hand its
    // job to the writer) before anyone subscribes.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = std::sync::Mutex::new(held);
    let mut blocker = std::pin::pin!(store.write(move |_| {
        let _ = held.lock().unwrap().recv();
        Ok(())
    }));
    let mut queued = std::pin::pin!(store.enqueue(p.id, OperationKind::Download, None));
    assert!(once(&mut blocker).await.is_none());
    assert!(once(&mut queued).await.is_none());
    let mut rx = store.subscribe();
    release.send(()).unwrap();
    blocker.await.unwrap();
    let (op, _) = queued.await.unwrap();
    let mut seen = Seen::default();
    seen.drain(&mut rx);
    assert_eq!(seen.operations.get(&op.id), Some(&op));
    store.close();
}

/// Polls a future once: its output if it was ready.
async fn once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    tokio::select! {
        biased;
        out = f => Some(out),
        () = std::future::ready(()) => None,
    }
}
