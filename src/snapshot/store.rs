//! [`SnapshotStore`]: the one place that holds the current snapshot, swaps in full reloads
//! atomically, and applies incremental patches.
//!
//! Readers call [`SnapshotStore::current`] once per batch and keep the `Arc`: a reload never
//! disturbs a batch in flight, and no reader ever sees half of one snapshot and half of
//! another. Writers (reloads and patches) are serialised by a mutex, so a patch applies to
//! exactly one snapshot version and versions only ever increase.

use std::io::BufRead;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use super::error::{ErrorLog, PatchReport, SnapshotError};
use super::json_row::JsonRow;
use super::ndjson::{Line, LineReader, MAX_LINE};
use super::owned::OwnedContact;
use super::table::Snapshot;
use crate::phone::RegionCode;

/// Holder of the current snapshot.
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
    writer: Mutex<()>,
}

impl SnapshotStore {
    /// A store serving `snapshot`.
    pub fn new(snapshot: Snapshot) -> SnapshotStore {
        SnapshotStore {
            current: ArcSwap::from_pointee(snapshot),
            writer: Mutex::new(()),
        }
    }

    /// A store with no contacts yet (stale until the first load), whose patches parse
    /// national numbers with `default_region`.
    pub fn empty(default_region: RegionCode) -> SnapshotStore {
        SnapshotStore::new(Snapshot::empty(default_region))
    }

    /// The current snapshot. Cheap (no lock); take it once per batch of lookups.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Installs a freshly loaded snapshot in one atomic step, dropping the overlay of the
    /// previous one. Returns the installed version; refuses a snapshot that is not newer
    /// than the current one ([`SnapshotError::Stale`]), which happens only when two loads
    /// race and the one started later finishes first.
    pub fn replace(&self, snapshot: Snapshot) -> Result<u64, SnapshotError> {
        self.replace_if(snapshot, |_| Ok(()))
    }

    /// Like [`SnapshotStore::replace`], but installs `snapshot` only if `check` accepts the
    /// snapshot it would replace. The check runs under the writer lock, so no patch or other
    /// reload changes the live snapshot between the check and the swap.
    pub fn replace_if(
        &self,
        snapshot: Snapshot,
        check: impl FnOnce(&Snapshot) -> Result<(), SnapshotError>,
    ) -> Result<u64, SnapshotError> {
        let _writer = self.writer.lock();
        check(&self.current.load())?;
        let current = self.current.load().version();
        let offered = snapshot.version();
        if offered <= current {
            return Err(SnapshotError::Stale { current, offered });
        }
        self.current.store(Arc::new(snapshot));
        Ok(offered)
    }

    /// Applies an NDJSON patch to the current snapshot's overlay, line by line: a contact
    /// object (the load shape) inserts or replaces that contact whole; `{"contact_id": "x",
    /// "deleted": true}` deletes it. Bad lines are rejected and reported; the others apply
    /// as they are read, so on a read error the lines before it stay applied.
    pub fn apply_patch<R: BufRead>(&self, reader: R) -> Result<PatchReport, SnapshotError> {
        let _writer = self.writer.lock();
        let snapshot = self.current.load_full();
        let region = snapshot.default_region();
        let mut lines = LineReader::new(reader);
        let mut row = JsonRow::default();
        let mut log = ErrorLog::default();
        let (mut upserted, mut deleted) = (0, 0);
        while let Some(line) = lines.next_line()? {
            let (number, bytes) = match line {
                Line::Text(number, bytes) => (number, bytes),
                Line::TooLong(number) => {
                    log.reject(number, format!("row: longer than {MAX_LINE} bytes"));
                    continue;
                }
            };
            if bytes.trim_ascii().is_empty() {
                continue;
            }
            if let Err(message) = row.parse(bytes) {
                log.reject(number, message);
                continue;
            }
            let fields = row.fields();
            if row.is_deleted() {
                match super::fields::contact_id(&fields) {
                    Ok(id) => {
                        snapshot.delete(id);
                        deleted += 1;
                    }
                    Err(message) => log.reject(number, message),
                }
                continue;
            }
            match OwnedContact::from_row(&fields, row.tags(), row.attributes(), region) {
                Ok(contact) => {
                    snapshot.upsert(contact);
                    upserted += 1;
                }
                Err(message) => log.reject(number, message),
            }
        }
        Ok(PatchReport {
            version: snapshot.version(),
            upserted,
            deleted,
            rejected_rows: log.rejected,
            errors: log.errors,
        })
    }

    /// The current snapshot's version.
    pub fn version(&self) -> u64 {
        self.current.load().version()
    }

    /// The current snapshot's export time.
    pub fn as_of(&self) -> DateTime<Utc> {
        self.current.load().as_of()
    }

    /// Live contacts in the current snapshot, patches included.
    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    /// Whether the current snapshot has no live contacts.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStore")
            .field("current", &*self.current.load())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::domain::{Channel, Consent};
    use crate::snapshot::{load_csv, PhoneField};

    const CN: RegionCode = RegionCode(*b"CN");

    fn snapshot(csv: &str) -> Snapshot {
        load_csv(csv.as_bytes(), Utc::now(), CN).expect("loads").0
    }

    fn store() -> SnapshotStore {
        SnapshotStore::new(snapshot(
            "contact_id,phone,tags,city,sms_consent\nb1,13123079337,vip,Beijing,opt_in\nb2,,,Wuhan,\n",
        ))
    }

    fn patch(store: &SnapshotStore, lines: &str) -> PatchReport {
        store.apply_patch(lines.as_bytes()).expect("patch reads")
    }

    fn ids(snap: &Snapshot) -> Vec<String> {
        snap.iter().map(|c| c.contact_id().to_owned()).collect()
    }

    #[test]
    fn shared_types_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Snapshot>();
        send_sync::<SnapshotStore>();
        send_sync::<crate::snapshot::ContactView<'static>>();
    }

    #[test]
    fn upsert_of_a_new_contact_is_visible_and_counted() {
        let store = store();
        assert_eq!(store.len(), 2);
        let report = patch(
            &store,
            r#"{"contact_id":"p1","phone":"+44 7400 123456","tags":["new"],"city":"London","email_consent":"opt_out","timezone":"Europe/London"}"#,
        );
        assert_eq!(
            (report.upserted, report.deleted, report.rejected_rows),
            (1, 0, 0)
        );
        assert_eq!(report.version, store.version());
        assert_eq!(store.len(), 3);
        let snap = store.current();
        let p1 = snap.lookup("p1").expect("upserted");
        assert!(p1.is_patched());
        assert!(matches!(p1.phone(), PhoneField::Valid(p) if p.e164 == 447400123456));
        assert!(p1.has_tag("new") && !p1.has_tag("vip"));
        assert_eq!(p1.attribute("city"), Some("London"));
        assert_eq!(p1.consent(Channel::Email), Consent::OptOut);
        assert_eq!(p1.consent(Channel::Wechat), Consent::Unknown);
        assert_eq!(p1.timezone(), Some(chrono_tz::Europe::London));
        let city = snap.attr_id("city").expect("loaded attribute");
        assert_eq!(p1.attribute_by_id(city), Some("London"));
        assert_eq!(ids(&snap), ["b1", "b2", "p1"]);
        // Upserting it again replaces it without changing the count.
        patch(&store, r#"{"contact_id":"p1","city":"Leeds"}"#);
        assert_eq!(store.len(), 3);
        assert_eq!(
            snap.lookup("p1")
                .and_then(|c| c.attribute("city").map(str::to_owned)),
            Some("Leeds".into())
        );
    }

    #[test]
    fn upsert_of_a_loaded_contact_replaces_it_whole() {
        let store = store();
        patch(
            &store,
            r#"{"contact_id":"b1","phone":"13123442056","city":"Shanghai"}"#,
        );
        let snap = store.current();
        assert_eq!(snap.len(), 2);
        let b1 = snap.lookup("b1").expect("present");
        assert!(b1.is_patched());
        assert!(matches!(b1.phone(), PhoneField::Valid(p) if p.e164 == 8613123442056));
        assert_eq!(b1.attribute("city"), Some("Shanghai"));
        assert!(!b1.has_tag("vip"), "an upsert is the whole contact");
        let vip = snap.tag_id("vip").expect("loaded tag");
        assert!(!b1.has_tag_id(vip));
        assert_eq!(b1.consent(Channel::Sms), Consent::Unknown);
        assert_eq!(ids(&snap), ["b1", "b2"]);
        assert!(!snap.lookup("b2").expect("untouched").is_patched());
    }

    #[test]
    fn delete_hides_contacts_and_upsert_brings_them_back() {
        let store = store();
        let report = patch(
            &store,
            "{\"contact_id\":\"b1\",\"deleted\":true}\n{\"contact_id\":\"ghost\",\"deleted\":true}\n",
        );
        assert_eq!((report.upserted, report.deleted), (0, 2));
        let snap = store.current();
        assert!(snap.lookup("b1").is_none());
        assert_eq!(snap.len(), 1);
        assert_eq!(ids(&snap), ["b2"]);
        // Deleting twice changes nothing more.
        patch(&store, r#"{"contact_id":"b1","deleted":true}"#);
        assert_eq!(snap.len(), 1);
        patch(&store, r#"{"contact_id":"b1","city":"Back"}"#);
        assert_eq!(snap.len(), 2);
        assert_eq!(
            snap.lookup("b1")
                .and_then(|c| c.attribute("city").map(str::to_owned)),
            Some("Back".into())
        );
        // An id only the overlay had disappears entirely.
        patch(
            &store,
            "{\"contact_id\":\"p9\"}\n{\"contact_id\":\"p9\",\"deleted\":true}",
        );
        assert!(snap.lookup("p9").is_none());
        assert_eq!(snap.len(), 2);
        assert_eq!(ids(&snap), ["b1", "b2"]);
    }

    #[test]
    fn bad_patch_lines_are_reported_and_change_nothing() {
        let store = store();
        let report = patch(
            &store,
            "{\"contact_id\":\"b2\",\"timezone\":\"Nowhere\"}\nnot json\n{\"deleted\":true}\n{\"contact_id\":\"ok\"}\n",
        );
        assert_eq!((report.upserted, report.rejected_rows), (1, 3));
        let lines: Vec<u64> = report.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 2, 3]);
        assert!(report.errors[0].message.starts_with("timezone:"));
        assert!(!store
            .current()
            .lookup("b2")
            .expect("untouched")
            .is_patched());
    }

    #[test]
    fn reload_clears_the_overlay_and_versions_only_increase() {
        let store = store();
        patch(&store, r#"{"contact_id":"p1"}"#);
        let old = store.current();
        assert_eq!(old.len(), 3);
        let older = snapshot("contact_id\nx\n");
        let newer = snapshot("contact_id,city\nb1,Chengdu\n");
        let v = store.replace(newer).expect("newer installs");
        assert_eq!(v, store.version());
        let snap = store.current();
        assert!(snap.lookup("p1").is_none(), "overlay cleared");
        assert_eq!(
            snap.lookup("b1")
                .and_then(|c| c.attribute("city").map(str::to_owned)),
            Some("Chengdu".into())
        );
        assert_eq!(store.len(), 1);
        // Old readers keep their snapshot, overlay included.
        assert!(old.lookup("p1").is_some());
        let err = store.replace(older).expect_err("older than installed");
        assert!(matches!(err, SnapshotError::Stale { .. }));
        assert_eq!(store.version(), v);
    }

    #[test]
    fn empty_store_is_stale_and_accepts_patches() {
        let store = SnapshotStore::empty(CN);
        assert_eq!((store.version(), store.len()), (0, 0));
        assert_eq!(store.as_of(), DateTime::UNIX_EPOCH);
        patch(&store, r#"{"contact_id":"e1","phone":"13123079337"}"#);
        assert!(matches!(
            store.current().lookup("e1").map(|c| c.phone()),
            Some(PhoneField::Valid(_))
        ));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn readers_never_see_half_a_snapshot_during_replace() {
        fn generation(tag: &str) -> Snapshot {
            let mut csv = String::from("contact_id,generation\n");
            for i in 0..2_000 {
                csv.push_str(&format!("c{i},{tag}\n"));
            }
            snapshot(&csv)
        }
        let store = SnapshotStore::new(generation("g0"));
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        let mut checked = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            let snap = store.current();
                            let first = snap
                                .lookup("c0")
                                .and_then(|c| c.attribute("generation").map(str::to_owned));
                            let first = first.expect("every generation has c0");
                            for i in (0..2_000).step_by(97) {
                                let c = snap
                                    .lookup(&format!("c{i}"))
                                    .expect("present in every generation");
                                assert_eq!(c.attribute("generation"), Some(first.as_str()));
                            }
                            assert_eq!(snap.len(), 2_000);
                            checked += 1;
                        }
                        checked
                    })
                })
                .collect();
            for g in 1..=20 {
                store.replace(generation(&format!("g{g}"))).expect("newer");
            }
            stop.store(true, Ordering::Relaxed);
            for r in readers {
                assert!(r.join().expect("reader ok") > 0);
            }
        });
        let last = store.current();
        assert_eq!(
            last.lookup("c1999")
                .and_then(|c| c.attribute("generation").map(str::to_owned)),
            Some("g20".into())
        );
    }
}
