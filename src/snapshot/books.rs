//! [`ContactBooks`]: each tenant's own contact snapshot. A job is planned, checked and
//! rendered against its tenant's book only, so a tenant can never address another tenant's
//! contacts by id, and two tenants may use the same contact id for different people.
//!
//! The default tenant's book is the installation's snapshot as it always was: kept under
//! `data_dir/snapshot`, loaded at start from there or from `snapshot.load_path`, and the one
//! whose age `/readyz` and the dispatch gate judge. Another tenant's book is kept under
//! `data_dir/tenants/<tenant>/snapshot`, made on its first upload or patch, and restored at
//! start. A tenant without a book reads an empty one: every recipient is an unknown contact.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use super::{LoadReport, SnapshotError, SnapshotFiles, SnapshotStore};
use crate::access::TenantId;
use crate::phone::RegionCode;

/// The directory, inside the data directory, that holds the other tenants' books.
const TENANTS_DIR: &str = "tenants";

/// One tenant's book: its live snapshot and where it is kept.
#[derive(Debug, Clone)]
pub struct Book {
    pub store: Arc<SnapshotStore>,
    pub files: SnapshotFiles,
}

/// Every tenant's contact book.
#[derive(Debug)]
pub struct ContactBooks {
    region: RegionCode,
    data_dir: PathBuf,
    default: Book,
    others: RwLock<HashMap<TenantId, Book>>,
    /// What a tenant without a book reads; never written.
    empty: Arc<SnapshotStore>,
}

impl ContactBooks {
    /// The books kept under `data_dir`, with only the default one open (empty until
    /// [`ContactBooks::restore_tenants`] and the start-up load fill them).
    pub fn new(data_dir: &Path, region: RegionCode) -> io::Result<ContactBooks> {
        Ok(ContactBooks {
            region,
            data_dir: data_dir.to_path_buf(),
            default: Book {
                store: Arc::new(SnapshotStore::empty(region)),
                files: SnapshotFiles::new(data_dir)?,
            },
            others: RwLock::new(HashMap::new()),
            empty: Arc::new(SnapshotStore::empty(region)),
        })
    }

    /// Books in memory only, for tests and tools: the default one serves `default`.
    pub fn with_default(data_dir: &Path, default: Arc<SnapshotStore>) -> io::Result<ContactBooks> {
        let region = default.current().default_region();
        let mut books = ContactBooks::new(data_dir, region)?;
        books.default.store = default;
        Ok(books)
    }

    /// The default tenant's book: the installation's snapshot.
    pub fn default_book(&self) -> &Book {
        &self.default
    }

    /// The default tenant's snapshot store (staleness is judged on it).
    pub fn default_store(&self) -> &Arc<SnapshotStore> {
        &self.default.store
    }

    /// The snapshot store `tenant` reads: its book, or an empty one when it has none yet.
    pub fn store(&self, tenant: &TenantId) -> Arc<SnapshotStore> {
        if tenant.is_default() {
            return self.default.store.clone();
        }
        match self.others.read().get(tenant) {
            Some(book) => book.store.clone(),
            None => self.empty.clone(),
        }
    }

    /// Whether `tenant` has a book of its own (the default tenant always has).
    pub fn has_book(&self, tenant: &TenantId) -> bool {
        tenant.is_default() || self.others.read().contains_key(tenant)
    }

    /// The book `tenant` writes to, made (empty, with its directory) when it has none.
    pub fn book_for_write(&self, tenant: &TenantId) -> io::Result<Book> {
        if tenant.is_default() {
            return Ok(self.default.clone());
        }
        if let Some(book) = self.others.read().get(tenant) {
            return Ok(book.clone());
        }
        let mut others = self.others.write();
        if let Some(book) = others.get(tenant) {
            return Ok(book.clone());
        }
        let book = Book {
            store: Arc::new(SnapshotStore::empty(self.region)),
            files: SnapshotFiles::new(&self.tenant_dir(tenant))?,
        };
        others.insert(tenant.clone(), book.clone());
        Ok(book)
    }

    /// The default tenant and every tenant with a book, in that order (the default first,
    /// the others by name).
    pub fn with_books(&self) -> Vec<TenantId> {
        let mut all = vec![TenantId::default_tenant()];
        all.extend(self.tenants());
        all
    }

    /// Every book with its tenant, the default one first: what a message naming only a
    /// number or an openid is looked up in.
    pub fn all(&self) -> Vec<(TenantId, Arc<SnapshotStore>)> {
        self.with_books()
            .into_iter()
            .map(|t| {
                let store = self.store(&t);
                (t, store)
            })
            .collect()
    }

    /// The tenants with a book of their own besides the default one, in name order.
    pub fn tenants(&self) -> Vec<TenantId> {
        let mut names: Vec<TenantId> = self.others.read().keys().cloned().collect();
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        names
    }

    /// Loads every other tenant's kept book (the default one is loaded by the start-up
    /// path). Answers each restored tenant with its report; a directory whose name is not a
    /// tenant is skipped.
    pub fn restore_tenants(&self) -> Result<Vec<(TenantId, LoadReport)>, SnapshotError> {
        let root = self.data_dir.join(TENANTS_DIR);
        let entries = match std::fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut restored = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(tenant) = name.to_str().and_then(|n| TenantId::parse(n).ok()) else {
                continue;
            };
            if tenant.is_default() || !entry.file_type()?.is_dir() {
                continue;
            }
            let book = self.book_for_write(&tenant)?;
            if let Some(report) = book.files.restore(&book.store, self.region)? {
                restored.push((tenant, report));
            }
        }
        Ok(restored)
    }

    fn tenant_dir(&self, tenant: &TenantId) -> PathBuf {
        self.data_dir.join(TENANTS_DIR).join(tenant.as_str())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::snapshot::{load_csv, UploadFormat};

    const CN: RegionCode = RegionCode(*b"CN");

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    fn upload(books: &ContactBooks, t: &TenantId, csv: &str) {
        let book = books.book_for_write(t).unwrap();
        let mut tee = book.files.tee_upload(csv.as_bytes()).unwrap();
        let as_of = Utc::now();
        let (snap, _) = load_csv(&mut tee, as_of, CN).unwrap();
        book.store.replace(snap).unwrap();
        book.files
            .keep_upload(tee, UploadFormat::Csv, as_of)
            .unwrap();
    }

    #[test]
    fn each_tenant_reads_its_own_book_and_a_new_one_reads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let books = ContactBooks::new(dir.path(), CN).unwrap();
        let (acme, beta) = (tenant("acme"), tenant("beta"));
        upload(
            &books,
            &TenantId::default_tenant(),
            "contact_id,phone\nc1,+8613123079337\n",
        );
        upload(&books, &acme, "contact_id,phone\nc1,+8613123079338\n");
        let phone = |t: &TenantId| {
            books
                .store(t)
                .current()
                .lookup("c1")
                .map(|c| format!("{:?}", c.phone()))
        };
        assert!(phone(&TenantId::default_tenant())
            .unwrap()
            .contains("8613123079337"));
        assert!(phone(&acme).unwrap().contains("8613123079338"));
        assert_eq!(
            phone(&beta),
            None,
            "a tenant without a book has no contacts"
        );
        assert!(!books.has_book(&beta));
        assert!(
            dir.path().join("snapshot/current.data").exists(),
            "default layout"
        );
        assert!(dir
            .path()
            .join("tenants/acme/snapshot/current.data")
            .exists());
    }

    #[test]
    fn other_tenants_books_come_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let books = ContactBooks::new(dir.path(), CN).unwrap();
        upload(
            &books,
            &tenant("acme"),
            "contact_id,phone\na1,+8613123079338\n",
        );
        drop(books);
        let again = ContactBooks::new(dir.path(), CN).unwrap();
        let restored = again.restore_tenants().unwrap();
        assert_eq!(restored.len(), 1);
        assert_eq!(again.tenants(), vec![tenant("acme")]);
        assert!(again
            .store(&tenant("acme"))
            .current()
            .lookup("a1")
            .is_some());
        assert!(again.default_store().current().lookup("a1").is_none());
    }
}
