//! Start-up migration when the shard count changes: every stream must end up in the store of
//! the shard that owns its channel under the new count, with its history and serials intact;
//! every app's push registry likewise, placed by the name `PUSH_REGISTRY`.

use std::path::{Path, PathBuf};

use futures_executor::block_on;

use crate::store::shard_dir;
use crate::{StorageError, Store, StoreConfig, PUSH_REGISTRY};

/// Opens `shard-0..shard-(shards-1)` under `data_dir`, moves every stream that is not in its
/// owner's store (including all streams of `shard-K` dirs with K >= `shards`) and removes the
/// emptied extra dirs. Blocks; run it before serving. Idempotency entries of removed dirs are
/// dropped (they are short-lived and keyed without a channel).
pub fn open_all(
    data_dir: &Path,
    shards: usize,
    owner_of: impl Fn(&str, &str) -> usize,
    cfg: &StoreConfig,
) -> Result<Vec<Store>, StorageError> {
    if shards == 0 {
        return Err(StorageError::InvalidInput("at least one shard store is needed".into()));
    }
    let extra_dirs = extra_shard_dirs(data_dir, shards)?;
    let first = Store::open_dir(&shard_dir(data_dir, 0), cfg, None)?;
    let secret = first.secret();
    let mut stores = vec![first];
    for shard in 1..shards {
        stores.push(Store::open_dir(&shard_dir(data_dir, shard), cfg, Some(secret))?);
    }
    let extras = extra_dirs.iter().map(|dir| Store::open_dir(dir, cfg, Some(secret))).collect::<Result<Vec<_>, _>>()?;

    let sources = stores.iter().enumerate().map(|(i, s)| (Some(i), s));
    for (index, source) in sources.chain(extras.iter().map(|s| (None, s))) {
        for (app, channel, _) in block_on(source.load_streams())? {
            let owner = owner_of(&app, &channel);
            let target = stores.get(owner).ok_or_else(|| {
                StorageError::InvalidInput(format!("owner_of({app}, {channel}) = {owner}, only {shards} shards"))
            })?;
            if index == Some(owner) {
                continue;
            }
            // Copy (synced) before deleting, so a crash in between leaves a duplicate that the
            // next start overwrites, never a loss.
            if let Some(export) = block_on(source.export_stream(&app, &channel))? {
                block_on(target.import_stream(&app, &channel, export))?;
            }
            block_on(source.drop_stream(&app, &channel))?;
        }
        for app in block_on(source.push_apps())? {
            let owner = owner_of(&app, PUSH_REGISTRY);
            if index == Some(owner) {
                continue;
            }
            let target = stores.get(owner).ok_or_else(|| {
                StorageError::InvalidInput(format!("owner_of({app}, {PUSH_REGISTRY}) = {owner}, only {shards} shards"))
            })?;
            // Copied (synced) before it is dropped here, as a stream is.
            block_on(target.push_import(block_on(source.push_export(&app))?))?;
            block_on(source.push_drop(&app))?;
        }
    }
    for (store, dir) in extras.into_iter().zip(&extra_dirs) {
        store.close()?;
        std::fs::remove_dir_all(dir).map_err(|e| StorageError::io(dir, &e))?;
    }
    Ok(stores)
}

fn extra_shard_dirs(data_dir: &Path, shards: usize) -> Result<Vec<PathBuf>, StorageError> {
    let entries = match std::fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StorageError::io(data_dir, &e)),
    };
    let mut extra = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(data_dir, &e))?;
        let name = entry.file_name();
        let index = name.to_str().and_then(|n| n.strip_prefix("shard-")).and_then(|n| n.parse::<usize>().ok());
        if index.is_some_and(|k| k >= shards) && entry.path().is_dir() {
            extra.push(entry.path());
        }
    }
    extra.sort();
    Ok(extra)
}
