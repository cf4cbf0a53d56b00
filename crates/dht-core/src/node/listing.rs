//! Answering LISTREQ: a page of what the store holds (`listing` feature).
//!
//! The store is walked in its own order (`hash_at`), from the position the
//! request names. Each fragment is read and decoded as an index to tell a
//! file's root from the rest; at most [`LIST_SCAN`] are read per request,
//! so a request costs the node a bounded amount of work whatever it asks,
//! and the answer tells where the next page starts.

use crate::config::{Replication, LIST_SCAN};
use crate::fragment::{FragmentBytes, FragmentHash};
use crate::index::{IndexFragment, Layout};
use crate::store::FragmentStore;
use crate::wire::{ListPage, Listed, ListedKind};

/// The most bytes a LIST packet takes besides its entries: version,
/// transmission, source (an IPv6 address), cookies, tag, nonce, page
/// header.
const PAGE_OVERHEAD: usize = 128;

/// The most bytes one entry takes: hash, kind, copies, size (a varint of
/// up to 10 bytes), name (a length and 29 bytes).
const ENTRY_MAX: usize = 32 + 1 + 1 + 10 + 1 + crate::config::INDEX_NAME_SIZE;

/// Entries a page may carry in a datagram of at most `max_datagram` bytes.
pub(crate) fn room(max_datagram: u16) -> usize {
    usize::from(max_datagram).saturating_sub(PAGE_OVERHEAD) / ENTRY_MAX
}

/// The page of `store` from position `from`: at most `room` entries, every
/// fragment read or only the roots of files. Copy counts the store does
/// not keep are the network's `replication`.
pub(crate) fn page(
    store: &mut impl FragmentStore,
    from: u32,
    files_only: bool,
    room: usize,
    replication: Replication,
) -> ListPage {
    let default_copies = match replication {
        Replication::Copies(r) => r,
        Replication::WholeShard => 0,
    };
    let mut page = ListPage { held: store.len() as u32, ..ListPage::default() };
    let mut bytes: FragmentBytes = [0; crate::config::FRAGMENT_SIZE];
    let mut position = from;
    for _ in 0..LIST_SCAN {
        if page.entries.len() >= room.min(page.entries.capacity()) {
            break;
        }
        let Some(hash) = store.hash_at(position as usize) else {
            return page;
        };
        position = position.saturating_add(1);
        let entry = match store.read(&hash, &mut bytes) {
            Ok(true) => classify(hash, &bytes),
            // Removed since `hash_at`, or unreadable: nothing to say.
            Ok(false) | Err(_) => continue,
        };
        if files_only && !matches!(entry.kind, ListedKind::File | ListedKind::CodedFile) {
            continue;
        }
        let copies = match store.copies(&hash) {
            0 => default_copies,
            n => n,
        };
        // Cannot fail: the loop stops when the page is full.
        let _ = page.entries.push(Listed { copies, ..entry });
    }
    page.next = store.hash_at(position as usize).map(|_| position);
    page
}

/// What the fragment `hash` with these bytes is (copies left at 0).
fn classify(hash: FragmentHash, bytes: &FragmentBytes) -> Listed {
    let mut listed =
        Listed { hash, kind: ListedKind::Data, copies: 0, size: 0, name: heapless::String::new() };
    let Ok(index) = IndexFragment::decode(bytes) else { return listed };
    let root = !index.name().is_empty() && index.check_root().is_ok();
    listed.kind = match (root, index.layout()) {
        (false, _) => ListedKind::Index,
        (true, Layout::Coded(_)) => ListedKind::CodedFile,
        (true, _) => ListedKind::File,
    };
    if root {
        listed.size = index.file_size();
        // A name is at most INDEX_NAME_SIZE bytes, the string's capacity.
        let _ = listed.name.push_str(index.name().as_str());
    }
    listed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::IndexName;
    use crate::store::{RamSlot, RamStore};

    fn store_of(fragments: &[FragmentBytes]) -> RamStore<[RamSlot; 8]> {
        let mut store = RamStore::new([RamSlot::EMPTY; 8]);
        for bytes in fragments {
            store.store(&FragmentHash::of(bytes), bytes).unwrap();
        }
        store
    }

    #[test]
    fn tells_files_from_data_and_pages_through() {
        let data = [7u8; crate::config::FRAGMENT_SIZE];
        let name = IndexName::from_file_name("notes.txt");
        let index = IndexFragment::for_file(name, 5000, |_| FragmentHash::of(&data)).unwrap();
        let mut root = [0u8; crate::config::FRAGMENT_SIZE];
        index.encode(&mut root);
        let leaf = IndexFragment::for_file(IndexName::EMPTY, 5000, |_| FragmentHash::of(&data));
        let mut unnamed = [0u8; crate::config::FRAGMENT_SIZE];
        leaf.unwrap().encode(&mut unnamed);
        let mut store = store_of(&[data, root, unnamed]);

        let all = page(&mut store, 0, false, 12, Replication::Copies(3));
        assert_eq!(all.held, 3);
        assert_eq!(all.next, None);
        let kinds: heapless::Vec<ListedKind, 3> = all.entries.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [ListedKind::Data, ListedKind::File, ListedKind::Index]);
        let file = &all.entries[1];
        assert_eq!((file.name.as_str(), file.size, file.copies), ("notes.txt", 5000, 3));
        assert_eq!(file.hash, FragmentHash::of(&root));

        let files = page(&mut store, 0, true, 12, Replication::Copies(3));
        assert_eq!(files.entries.len(), 1);
        // Two entries a page: the second page starts after them.
        let first = page(&mut store, 0, false, 2, Replication::Copies(3));
        assert_eq!((first.entries.len(), first.next), (2, Some(2)));
        let second = page(&mut store, 2, false, 2, Replication::Copies(3));
        assert_eq!((second.entries.len(), second.next), (1, None));
        // Past the end: an empty last page.
        assert_eq!(page(&mut store, 9, false, 2, Replication::Copies(3)).entries.len(), 0);
    }

    #[test]
    fn a_count_kept_with_the_fragment_wins() {
        let data = [1u8; crate::config::FRAGMENT_SIZE];
        let mut store = store_of(&[data]);
        assert!(store.set_copies(&FragmentHash::of(&data), 16));
        let listed = page(&mut store, 0, false, 12, Replication::Copies(3));
        assert_eq!(listed.entries[0].copies, 16);
    }
}
