//! Prints the static memory of the core's state machines with their
//! default capacities, as one JSON object.
//!
//! `cargo run -p dht-core --example sizes`

use core::mem::size_of;

use dht_core::download::Download;
use dht_core::store::{NoStore, RamSlot, RamStore};
use dht_core::upload::Upload;
use dht_core::{Node, SmallNode};

fn main() {
    println!(
        "{{\"node_default\": {}, \"small_node\": {}, \"ram_slot\": {}, \"upload_32\": {}, \"upload_4\": {}, \"download_16\": {}, \"download_1\": {}, \"upload_2_2\": {}}}",
        size_of::<Node<NoStore>>(),
        size_of::<SmallNode<RamStore<[RamSlot; 4]>>>() - size_of::<[RamSlot; 4]>(),
        size_of::<RamSlot>(),
        size_of::<Upload<&[u8], 32>>(),
        size_of::<Upload<&[u8], 4>>(),
        size_of::<Download<(), 16>>(),
        size_of::<Download<(), 1>>(),
        size_of::<Upload<&[u8], 2, 2>>(),
    );
}
