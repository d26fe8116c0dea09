//! Files a service keeps outside its database (a dispute's documents),
//! through the `object_store` crate, chosen by URL: `file:///var/lib/…` (the
//! local filesystem; `concierge dev` keeps them under its data directory),
//! `s3://bucket/prefix` (S3-compatible storage, configured by the usual
//! `AWS_*` variables: `AWS_ENDPOINT` for MinIO and the like), `memory://`.
//! The database row that points at a file is written only once the file is
//! whole, so nothing half-written is ever listed.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Where files go (`CONCIERGE_FILES__URL`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FilesConfig {
    pub url: Option<String>,
}

/// A service's file store: an object store and the prefix its keys live
/// under.
#[derive(Clone)]
pub struct Files {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files").field("url", &self.url).finish()
    }
}

impl Files {
    /// The store `url` names; a `file://` directory is created if missing.
    pub fn open(url: &str) -> Result<Self> {
        let bad = |why: String| Error::invalid("files.url", why);
        let parsed = url::Url::parse(url).map_err(|e| bad(format!("{url:?}: {e}")))?;
        if parsed.scheme() == "file" {
            let dir = parsed
                .to_file_path()
                .map_err(|()| bad(format!("{url:?} is not a local directory")))?;
            return Self::local(&dir);
        }
        // S3 over HTTPS signs and connects with the workspace's one rustls
        // provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (store, prefix) = object_store::parse_url_opts(
            &parsed,
            std::env::vars().filter(|(k, _)| k.starts_with("AWS_")),
        )
        .map_err(|e| bad(format!("{url:?}: {e}")))?;
        Ok(Self {
            store: Arc::from(store),
            prefix,
            url: url.to_string(),
        })
    }

    /// Files in the local directory `dir`.
    pub fn local(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::internal)?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(Error::internal)?
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(store),
            prefix: Path::default(),
            url: format!("file://{}", dir.display()),
        })
    }

    /// Files kept in memory, gone with the process.
    pub fn memory() -> Self {
        Self {
            store: Arc::new(object_store::memory::InMemory::new()),
            prefix: Path::default(),
            url: "memory://".into(),
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The location of `key` ("disputes/d1/documents/x") in the store.
    pub fn path(&self, key: &str) -> Path {
        key.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |path, part| path.join(part))
    }

    /// Where the files go, for the start-up log.
    pub fn describe(&self) -> String {
        format!("files are kept in {}", self.url)
    }
}

/// An object store failure as the service reports it: a store that cannot be
/// reached is UNAVAILABLE, like a database outage.
pub fn store_error(e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { path, .. } => {
            Error::internal(anyhow::anyhow!("file {path} is missing from the store"))
        }
        other => Error::Unavailable(format!("the file store: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_chosen_by_its_url() {
        let dir = tempfile::tempdir().unwrap();
        let local = Files::open(&format!("file://{}/files", dir.path().display())).unwrap();
        assert!(dir.path().join("files").is_dir(), "created");
        assert_eq!(
            local.path("disputes/d1/documents/x").to_string(),
            "disputes/d1/documents/x"
        );
        // S3 is configured without a call: a deployment starts whether or not
        // the bucket answers yet.
        let s3 = Files::open("s3://concierge-documents/disputes").unwrap();
        assert_eq!(s3.path("a/b").to_string(), "disputes/a/b");
        let bad = Files::open("ftp://example.com/x").unwrap_err();
        assert!(matches!(bad, Error::InvalidArgument(_)), "{bad:?}");
        assert!(Files::open("not a url").is_err());
    }
}
