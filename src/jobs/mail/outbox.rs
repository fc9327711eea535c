//! The outbox transport: each message an `.eml` file in a directory (previews, tests),
//! named after its recipient, never two recipients in one file.

use std::path::Path;

use sha2::{Digest, Sha256};

/// The longest file name stem in an outbox (file systems allow 255 bytes).
const MAX_STEM: usize = 160;

/// `name` as a file name stem: kept as it is when it is short and safe; otherwise its
/// safe characters, cut short, then `~` (which a kept name never has) and a hash of the
/// exact name, so that two recipients never share a file (`a+b@`, `a=b@`).
fn outbox_stem(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_STEM)
        .collect();
    if safe == name {
        return safe;
    }
    let hash: String = Sha256::digest(name.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{safe}~{hash}")
}

pub(super) fn write_eml(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let safe = outbox_stem(name);
    // 0666 less the umask: a preview is for whoever reads the outbox, not only this
    // process's user (tempfile's default is 0600).
    let mut tmp = tempfile::Builder::new()
        .prefix(".eml-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(dir.join(format!("{safe}.eml")))
        .map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::super::testing::{cfg, message};
    use super::super::{Attachment, Mailer, Outgoing};
    use super::*;

    #[test]
    fn outbox_writes_a_complete_message() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mailer::new(&cfg(dir.path())).unwrap();
        let msg = Outgoing {
            message_id: "<abc.job@example.com>".into(),
            to: "CEO <ceo@example.com>".parse().unwrap(),
            subject: "Report · 2024".into(),
            text: "Hello".into(),
            html: Some("<p>Hello</p>".into()),
            attachments: vec![Attachment {
                filename: "report.en.pdf".into(),
                content_type: "application/pdf",
                bytes: b"%PDF-1.7 test".to_vec(),
            }],
            outbox_name: "job/en ceo@example.com".into(),
        };
        assert_eq!(m.send(&msg, &AtomicBool::new(false), |_, _| {}), (1, None));
        // Its name had unsafe characters: made safe, with a hash of the exact name.
        let stem = outbox_stem("job/en ceo@example.com");
        assert!(stem.starts_with("job_en_ceo@example.com~"), "{stem}");
        let file = dir.path().join(format!("{stem}.eml"));
        let eml = std::fs::read_to_string(file).unwrap();
        assert!(eml.contains("Message-ID: <abc.job@example.com>"), "{eml}");
        assert!(eml.contains("report.en.pdf") && eml.contains("text/html"));
    }

    #[test]
    fn recipients_whose_names_sanitise_alike_get_files_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mailer::new(&cfg(dir.path())).unwrap();
        for to in [
            "a+b@example.com",
            "a=b@example.com",
            "a&b@example.com",
            "ab@example.com",
        ] {
            assert_eq!(
                m.send(&message(to), &AtomicBool::new(false), |_, _| {}),
                (1, None)
            );
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(
            names.contains(&"job_2024_en_ab@example.com.eml".to_owned()),
            "{names:?}"
        );
        assert!(names.iter().all(|n| n.len() <= MAX_STEM + 20), "{names:?}");
        // Long names are cut, still unique.
        let long = format!("{}@example.com", "a".repeat(300));
        assert_eq!(outbox_stem(&long).len(), MAX_STEM + 13);
        assert_ne!(outbox_stem(&long), outbox_stem(&format!("{long}x")));
    }
}
