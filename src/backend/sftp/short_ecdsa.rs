//! OpenSSH ECDSA key files whose private scalar has a leading zero byte.
//!
//! ssh-key 0.7.0-rc.11 (the version russh 0.65 pins; rc.12 is the same)
//! refuses a P-256 or P-384 private key whose `mpint` is shorter than the
//! curve ("length invalid"). OpenSSH writes mpints without leading zeros,
//! so one ECDSA key in 256 made by ssh-keygen is such a file, and a valid
//! one. This module reads exactly those files: it opens the
//! `openssh-key-v1` container itself, decrypts it with ssh-key's own KDF
//! and cipher when it is encrypted, pads the scalar to the curve's size and
//! builds the key from ssh-key's types. Drop it once ssh-key accepts short
//! scalars.

use russh::keys::ssh_key::encoding::Decode;
use russh::keys::ssh_key::encoding::base64::{Base64, Encoding};
use russh::keys::ssh_key::private::{EcdsaKeypair, EcdsaPrivateKey, KeypairData};
use russh::keys::ssh_key::public::EcdsaPublicKey;
use russh::keys::ssh_key::{Cipher, Kdf, PrivateKey};
use zeroize::Zeroizing;

const MAGIC: &[u8] = b"openssh-key-v1\0";

/// The ECDSA key in an OpenSSH private key file, read without ssh-key's
/// length check; None when the text is not such a key or does not open
/// (an encrypted key without its passphrase, or with a wrong one). Callers
/// try it only after russh refused the file, and keep russh's error when
/// this gives None.
pub(super) fn read(text: &str, passphrase: Option<&str>) -> Option<PrivateKey> {
    let body: Zeroizing<String> = Zeroizing::new(
        text.lines()
            .map(str::trim)
            .skip_while(|line| *line != "-----BEGIN OPENSSH PRIVATE KEY-----")
            .skip(1)
            .take_while(|line| !line.starts_with("-----END"))
            .collect(),
    );
    let bytes = Zeroizing::new(Base64::decode_vec(&body).ok()?);
    let mut rest = bytes.strip_prefix(MAGIC)?;
    let cipher = Cipher::new(std::str::from_utf8(string(&mut rest)?).ok()?).ok()?;
    let kdf_fields = rest;
    string(&mut rest)?; // KDF name
    string(&mut rest)?; // KDF options
    let kdf_fields = &kdf_fields[..kdf_fields.len() - rest.len()];
    if u32_be(&mut rest)? != 1 {
        return None;
    }
    string(&mut rest)?; // the public key, repeated inside the private section
    let sealed = string(&mut rest)?;

    let private = if cipher.is_none() {
        Zeroizing::new(sealed.to_vec())
    } else {
        let kdf = Kdf::decode(&mut &kdf_fields[..]).ok()?;
        let (key, iv) = kdf.derive_key_and_iv(cipher, passphrase?).ok()?;
        // AEAD ciphers put their tag after the sealed section.
        let tag = if cipher.has_tag() { Some(rest.get(..16)?.try_into().ok()?) } else { None };
        let mut buffer = Zeroizing::new(sealed.to_vec());
        cipher.decrypt(&key, &iv, &mut buffer, tag).ok()?;
        buffer
    };

    let mut section = &private[..];
    let (check1, check2) = (u32_be(&mut section)?, u32_be(&mut section)?);
    if check1 != check2 {
        return None; // wrong passphrase
    }
    if !string(&mut section)?.starts_with(b"ecdsa-sha2-nistp") {
        return None;
    }
    string(&mut section)?; // curve name; the point says which curve
    let point = string(&mut section)?;
    let scalar = string(&mut section)?;
    let comment = String::from_utf8_lossy(string(&mut section)?).into_owned();
    let keypair = match EcdsaPublicKey::from_sec1_bytes(point).ok()? {
        EcdsaPublicKey::NistP256(public) => EcdsaKeypair::NistP256 { public, private: padded(scalar)? },
        EcdsaPublicKey::NistP384(public) => EcdsaKeypair::NistP384 { public, private: padded(scalar)? },
        EcdsaPublicKey::NistP521(public) => EcdsaKeypair::NistP521 { public, private: padded(scalar)? },
    };
    PrivateKey::new(KeypairData::Ecdsa(keypair), comment).ok()
}

/// An unsigned big-endian `mpint` as a curve-sized scalar.
fn padded<const SIZE: usize>(mpint: &[u8]) -> Option<EcdsaPrivateKey<SIZE>> {
    let first = mpint.iter().position(|b| *b != 0).unwrap_or(mpint.len());
    let digits = &mpint[first..];
    if digits.is_empty() || digits.len() > SIZE {
        return None;
    }
    let mut bytes = Zeroizing::new([0u8; SIZE]);
    bytes[SIZE - digits.len()..].copy_from_slice(digits);
    Some(EcdsaPrivateKey::from(*bytes))
}

fn u32_be(input: &mut &[u8]) -> Option<u32> {
    let (head, tail) = input.split_first_chunk::<4>()?;
    *input = tail;
    Some(u32::from_be_bytes(*head))
}

/// An SSH `string`: a u32 length, then that many bytes.
fn string<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32_be(input)? as usize;
    if input.len() < len {
        return None;
    }
    let (head, tail) = input.split_at(len);
    *input = tail;
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by `ssh-keygen -t ecdsa -b 256`: its scalar is 31 bytes.
    const SHORT: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAaAAAABNlY2RzYS
1zaGEyLW5pc3RwMjU2AAAACG5pc3RwMjU2AAAAQQSv99bnQk4Nj3ijAP+BouWI2taKLZXV
jKL0aY6mNj3STK2wLanpvlk5YUhD/vOAPWrtsFEc9Gn6okCCq40q7ZzOAAAAmNB73PLQe9
zyAAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBK/31udCTg2PeKMA
/4Gi5Yja1ootldWMovRpjqY2PdJMrbAtqem+WTlhSEP+84A9au2wURz0afqiQIKrjSrtnM
4AAAAfVYi9T6mFlbfrcB+ztF/dhYkzpVKLq+1Gkyc3FTFFAQAAAAF4
-----END OPENSSH PRIVATE KEY-----
";
    /// The same key after `ssh-keygen -p -N fixture-pass`.
    const SHORT_ENCRYPTED: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABCgklbyRj
dMpRvkIcDDdxnaAAAAEAAAAAEAAABoAAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlz
dHAyNTYAAABBBK/31udCTg2PeKMA/4Gi5Yja1ootldWMovRpjqY2PdJMrbAtqem+WTlhSE
P+84A9au2wURz0afqiQIKrjSrtnM4AAACgpa/SO1rFkDromAOKNOjmqnl3vtXF4zmJRBc8
lj7iLoH4iJUE0tyKhVsX5c9RSXEsSHUew9LrTVhMaeX48eLTx7rQG0IrJBjFDMhxyOfA95
eg/a4DXqaMwgM23yB9aeeAOBb41AhUqEOncz79xvlFRwvmH27eQBKR+tIpSZfUnMsixulT
qywbdjXj7D2j80lAwRBqWY8ET+bzELHjxFJ5OQ==
-----END OPENSSH PRIVATE KEY-----
";
    const SHORT_PUBLIC: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBK/31udCTg2PeKMA/4Gi5Yja1ootldWMovRpjqY2PdJMrbAtqem+WTlhSEP+84A9au2wURz0afqiQIKrjSrtnM4=";

    fn public_base64(key: &PrivateKey) -> String {
        key.public_key().to_openssh().unwrap().split_whitespace().nth(1).unwrap().to_string()
    }

    #[test]
    fn russh_alone_refuses_a_short_scalar() {
        // When this starts to pass, ssh-key was mended and this module can go.
        assert!(russh::keys::decode_secret_key(SHORT, None).is_err());
    }

    #[test]
    fn a_short_scalar_is_padded_and_the_key_signs() {
        let key = read(SHORT, None).expect("key");
        assert_eq!(public_base64(&key), SHORT_PUBLIC);
        assert_eq!(key.comment().as_str_lossy(), "x");
        // The private scalar is the curve's 32 bytes, leading zero first.
        let KeypairData::Ecdsa(EcdsaKeypair::NistP256 { private, .. }) = key.key_data() else { panic!("P-256") };
        assert_eq!(private.as_slice().len(), 32);
        assert_eq!(private.as_slice()[0], 0);
        let signature = key.sign("barge", russh::keys::HashAlg::Sha256, b"message").expect("sign");
        key.public_key().verify("barge", b"message", &signature).expect("verify");
    }

    #[test]
    fn an_encrypted_short_scalar_opens_with_its_passphrase_only() {
        let key = read(SHORT_ENCRYPTED, Some("fixture-pass")).expect("key");
        assert_eq!(public_base64(&key), SHORT_PUBLIC);
        assert!(read(SHORT_ENCRYPTED, Some("wrong")).is_none());
        assert!(read(SHORT_ENCRYPTED, None).is_none());
    }

    #[test]
    fn other_text_is_not_a_key() {
        assert!(read("", None).is_none());
        assert!(read("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n", None).is_none());
        let truncated: String = SHORT.lines().take(4).chain(SHORT.lines().last()).collect::<Vec<_>>().join("\n");
        assert!(read(&truncated, None).is_none());
    }
}
