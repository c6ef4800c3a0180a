use super::*;

/// Formats an address as the kernel does, on this machine's byte order.
fn hex(addr: SocketAddr) -> String {
    let words: Vec<[u8; 4]> = match addr.ip() {
        IpAddr::V4(ip) => vec![ip.octets()],
        IpAddr::V6(ip) => ip
            .octets()
            .chunks(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect(),
    };
    let ip: String = words
        .iter()
        .map(|w| format!("{:08X}", u32::from_ne_bytes(*w)))
        .collect();
    format!("{ip}:{:04X}", addr.port())
}

fn row(n: usize, local: &str, remote: &str, st: u8, uid: u32, inode: u64) -> String {
    let (l, r): (SocketAddr, SocketAddr) = (local.parse().unwrap(), remote.parse().unwrap());
    format!(
        "  {n}: {} {} {st:02X} 00000000:00000000 00:00000000 00000000 {uid:>5}        0 {inode} 1 0000000000000000 20 4 30 10 -1",
        hex(l),
        hex(r)
    )
}

const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

#[test]
fn the_kernel_format_on_this_machine() {
    if cfg!(target_endian = "little") {
        assert_eq!(hex("127.0.0.1:1455".parse().unwrap()), "0100007F:05AF");
        assert_eq!(
            hex("[::1]:1455".parse().unwrap()),
            "00000000000000000000000001000000:05AF"
        );
    }
    let line = "   0: 0100007F:05AF 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 1 0000000000000000 100 0 0 10 0";
    if cfg!(target_endian = "little") {
        let rows = parse_table(&format!("{HEADER}\n{line}\n"));
        assert_eq!(
            rows,
            vec![SocketRow {
                local: "127.0.0.1:1455".parse().unwrap(),
                remote: "0.0.0.0:0".parse().unwrap(),
                state: LISTEN,
                uid: 1000,
                inode: 12345,
            }]
        );
    }
}

#[test]
fn mapped_addresses_read_as_ipv4() {
    let text = row(
        0,
        "[::ffff:127.0.0.1]:40000",
        "[::ffff:127.0.0.1]:1455",
        1,
        7,
        9,
    );
    let rows = parse_table(&text);
    assert_eq!(rows[0].local, "127.0.0.1:40000".parse().unwrap());
    assert_eq!(rows[0].remote, "127.0.0.1:1455".parse().unwrap());
}

#[test]
fn malformed_rows_are_skipped() {
    let good = row(2, "127.0.0.1:1", "127.0.0.1:2", 1, 0, 5);
    for bad in [
        "",
        "garbage",
        "  0: 0100007F 00000000:0000 0A 0 0 0 0 0 0",
        "  0: 0100007Z:05AF 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
        "  0: 0100:05AF 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
        "  0: 0100007F:05AF 00000000:0000 0A 00000000:00000000 00:00000000 00000000 x 0 1",
    ] {
        assert_eq!(
            parse_table(&format!("{HEADER}\n{bad}\n{good}")).len(),
            1,
            "{bad:?}"
        );
    }
}

#[test]
fn only_rows_of_the_port_are_parsed() {
    let table = [
        HEADER.to_owned(),
        row(0, "127.0.0.1:40000", "127.0.0.1:1455", 1, 1, 1),
        row(1, "127.0.0.1:1455", "127.0.0.1:40000", 1, 2, 2),
        row(2, "[::1]:40000", "[::1]:1455", 1, 3, 3),
    ]
    .join("\n");
    let uids = |port| {
        rows_with_local_port(&table, port)
            .iter()
            .map(|r| r.uid)
            .collect::<Vec<_>>()
    };
    assert_eq!(uids(40000), vec![1, 3]);
    assert_eq!(uids(1455), vec![2]);
    assert_eq!(uids(1), Vec::<u32>::new());
}

#[test]
fn the_owner_is_the_clients_own_row() {
    let ours: SocketAddr = "127.0.0.1:1455".parse().unwrap();
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let table = [
        row(0, "127.0.0.1:1455", "0.0.0.0:0", LISTEN, 1000, 11),
        // Our accepted end: our uid, not the client's.
        row(1, "127.0.0.1:1455", "127.0.0.1:40000", 1, 1000, 12),
        row(2, "127.0.0.1:40000", "127.0.0.1:1455", 1, 65534, 13),
    ]
    .join("\n");
    let rows = parse_table(&table);
    assert_eq!(owner_of(&rows, ours, peer), Some(65534));
    assert_eq!(
        owner_of(&rows, ours, "127.0.0.1:40001".parse().unwrap()),
        None
    );
    // A client on an IPv6 socket reaching our IPv4 listener.
    let mapped = parse_table(&row(
        0,
        "[::ffff:127.0.0.1]:40000",
        "[::ffff:127.0.0.1]:1455",
        1,
        42,
        14,
    ));
    assert_eq!(owner_of(&mapped, ours, peer), Some(42));
    let v6: SocketAddr = "[::1]:1455".parse().unwrap();
    let v6peer: SocketAddr = "[::1]:50000".parse().unwrap();
    let rows6 = parse_table(&row(0, "[::1]:50000", "[::1]:1455", 1, 1000, 15));
    assert_eq!(owner_of(&rows6, v6, v6peer), Some(1000));
}

#[test]
fn a_closed_client_proves_nothing() {
    let ours: SocketAddr = "127.0.0.1:1455".parse().unwrap();
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    // Time-wait rows show uid 0 and no inode; a closing socket, no inode.
    for (st, uid, inode) in [
        (0x06, 0, 0),
        (0x05, 0, 0),
        (0x04, 1000, 0),
        (0x08, 1000, 99),
    ] {
        let rows = parse_table(&row(0, "127.0.0.1:40000", "127.0.0.1:1455", st, uid, inode));
        assert_eq!(owner_of(&rows, ours, peer), None, "state {st:02X}");
    }
}

#[test]
fn listeners_include_the_wildcard_of_the_family() {
    let table = [
        row(0, "[::1]:1455", "[::]:0", LISTEN, 65534, 21),
        row(1, "0.0.0.0:1457", "0.0.0.0:0", LISTEN, 0, 22),
        row(2, "127.0.0.1:1455", "127.0.0.1:3", 1, 5, 23),
        row(3, "[::]:1458", "[::]:0", LISTEN, 7, 24),
        row(4, "127.0.0.1:1459", "0.0.0.0:0", CLOSE, 8, 25),
    ]
    .join("\n");
    let rows = parse_table(&table);
    let uids = |a: &str| {
        listeners_on(&rows, a.parse().unwrap())
            .iter()
            .map(|r| r.uid)
            .collect::<Vec<_>>()
    };
    assert_eq!(uids("[::1]:1455"), vec![65534]);
    assert_eq!(uids("127.0.0.1:1455"), Vec::<u32>::new(), "not listening");
    assert_eq!(uids("127.0.0.1:1457"), vec![0]);
    assert_eq!(uids("[::1]:1457"), Vec::<u32>::new(), "another family");
    assert_eq!(uids("[::1]:1458"), vec![7]);
    assert_eq!(uids("127.0.0.1:1459"), vec![8], "bound, not listening");
}

#[test]
fn a_holder_names_what_is_known() {
    let h = Holder {
        uid: 65534,
        user: Some("nobody".into()),
        process: Some((4242, "python3".into())),
    };
    assert_eq!(h.to_string(), "uid 65534 (nobody), process 4242 (python3)");
    let bare = Holder {
        uid: 7,
        user: None,
        process: None,
    };
    assert_eq!(bare.to_string(), "uid 7");
    assert_eq!(socket_link(5), "socket:[5]");
}

/// The real tables: a connection from this process is ours.
#[cfg(target_os = "linux")]
#[test]
fn a_real_connection_is_owned_by_this_uid() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_server, peer) = listener.accept().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    let me = rustix::process::geteuid().as_raw();
    assert_eq!(
        peer_uid(listener.local_addr().unwrap(), peer).unwrap(),
        Some(me)
    );
    let holder = holder(listener.local_addr().unwrap()).unwrap();
    assert_eq!(holder.uid, me);
    assert_eq!(
        holder.process.map(|p| p.0),
        Some(std::process::id()),
        "found through /proc/<pid>/fd"
    );
}
