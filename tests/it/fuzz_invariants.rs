//! The fuzz targets' invariants under proptest, in `cargo test` (so in
//! CI): random bytes, and the fuzz seeds (tests/fuzz/corpus) with random
//! edits, which reach much further into each format than noise. The
//! invariants are the fuzz crate's own file, compiled here as a module.

use proptest::prelude::*;

#[path = "../fuzz/src/lib.rs"]
mod invariants;

/// The seed files of one fuzz target.
macro_rules! seeds {
    ($($file:literal),+ $(,)?) => {
        &[$(include_bytes!(concat!("../fuzz/corpus/", $file))),+]
    };
}

/// Random bytes; or a seed with a few bytes replaced, inserted or
/// removed, or cut short.
fn input(seeds: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    let noise = prop::collection::vec(any::<u8>(), 0..300);
    let edit = (0u8..3, any::<prop::sample::Index>(), any::<u8>());
    let edited = (prop::sample::select(seeds), prop::collection::vec(edit, 1..6)).prop_map(|(seed, edits)| {
        let mut data = seed.to_vec();
        for (op, at, byte) in edits {
            let at = at.index(data.len() + 1);
            match op {
                0 if at < data.len() => data[at] = byte,
                1 => data.insert(at, byte),
                _ if at < data.len() => {
                    data.remove(at);
                }
                _ => {}
            }
        }
        data
    });
    let cut = (prop::sample::select(seeds), any::<prop::sample::Index>())
        .prop_map(|(seed, at)| seed[..at.index(seed.len() + 1)].to_vec());
    prop_oneof![2 => noise, 3 => edited, 1 => cut]
}

// Case counts keep each test well under 2 s in a debug build.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn listing_list(data in input(seeds![
        "listing_list/captured-vsftpd-list.txt",
        "listing_list/captured-pureftpd-list.txt",
        "listing_list/captured-proftpd-list.txt",
        "listing_list/edge-cases-list.txt",
        "listing_list/eplf.txt",
        "listing_list/iis-dos.txt",
        "listing_list/netware.txt",
        "listing_list/long-iso.txt",
    ])) {
        invariants::listing_list(&data);
    }

    #[test]
    fn listing_mlsd(data in input(seeds![
        "listing_mlsd/captured-pureftpd-mlsd.txt",
        "listing_mlsd/captured-proftpd-mlsd.txt",
        "listing_mlsd/mlst-reply-line.txt",
    ])) {
        invariants::listing_mlsd(&data);
    }

    #[test]
    fn known_hosts(data in input(seeds!["known_hosts/known_hosts"])) {
        invariants::known_hosts(&data);
    }
}

/// The harness is not vacuous: a real server's replies go through.
#[test]
fn ftp_client_reads_a_whole_vsftpd_session() {
    let session = invariants::ftp_client_session(include_bytes!("../fuzz/corpus/ftp_client/vsftpd-session"));
    assert_eq!(session, ["logged in", "8 features", "/home/u", "2024-01-01 12:00:00", "1234", "noop"], "{session:?}");
    let cut = invariants::ftp_client_session(b"220 hi\r\n331 pass\r\n");
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert!(cut[0].starts_with("error"), "{cut:?}");
}

// A runtime and a loopback connection per case.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn ftp_client(data in input(seeds![
        "ftp_client/vsftpd-session",
        "ftp_client/pureftpd-session",
        "ftp_client/multiline-and-oddities",
        "ftp_client/crash-welcome-not-utf8",
    ])) {
        invariants::ftp_client(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn ftp_time(data in input(seeds!["ftp_time/seed0", "ftp_time/seed1", "ftp_time/seed3", "ftp_time/seed5"])) {
        invariants::ftp_time(&data);
    }

    #[test]
    fn ftp_reply(data in input(seeds![
        "ftp_reply/feat",
        "ftp_reply/pasv",
        "ftp_reply/epsv",
        "ftp_reply/hash",
        "ftp_reply/multi-inner",
        "ftp_reply/crash-epsv-paren-order",
        "ftp_reply/crash-unfinished-multiline",
    ])) {
        invariants::ftp_reply(&data);
    }

    #[test]
    fn ftp_names(data in input(seeds![
        "ftp_names/utf8",
        "ftp_names/latin1",
        "ftp_names/escape-range",
        "ftp_names/mixed",
        "ftp_names/crash-escape-char-utf8",
    ])) {
        invariants::ftp_names(&data);
    }

    #[test]
    fn ftp_text(data in input(seeds!["ftp_text/crlf", "ftp_text/lf", "ftp_text/cr-end"])) {
        invariants::ftp_text(&data);
    }

    #[test]
    fn ssh_config(data in input(seeds!["ssh_config/config", "ssh_config/wildcard", "ssh_config/empty-values"])) {
        invariants::ssh_config(&data);
    }

    #[test]
    fn kexinit(data in input(seeds!["kexinit/openssh"])) {
        invariants::kexinit(&data);
    }

    #[test]
    fn location(data in input(seeds![
        "location/seed0",
        "location/seed1",
        "location/seed3",
        "location/crash-colon-host",
        "location/crash-port-zero",
    ])) {
        invariants::location(&data);
    }

    #[test]
    fn netrc(data in input(seeds![
        "netrc/netrc",
        "netrc/crash-machine-at-end",
        "netrc/crash-value-next-line",
    ])) {
        invariants::netrc(&data);
    }

    #[test]
    fn units(data in input(seeds!["units/seed0", "units/seed1", "units/seed2", "units/seed3", "units/seed4"])) {
        invariants::units(&data);
    }

    #[test]
    fn relpath(data in input(seeds!["relpath/seed0", "relpath/seed2", "relpath/seed4", "relpath/seed6"])) {
        invariants::relpath(&data);
    }

    #[test]
    fn cert(data in input(seeds!["cert/ftp.example.org.der"])) {
        invariants::cert(&data);
    }
}
