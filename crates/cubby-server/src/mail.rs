//! Outgoing email: verification links, password resets, invites, consent confirmations.
//!
//! Two ways out, chosen by [`MailSettings`] and built by [`mailer`]:
//! - [`OutboxMailer`] writes each message as a file (`<unix-millis>-<random hex>.eml`) into an
//!   outbox directory, for an operator without SMTP and for tests, which read the files (see
//!   [`read_outbox`]) to find the links and tokens they carry;
//! - [`SmtpMailer`] hands each message to an SMTP server over TLS (lettre, rustls).
//!
//! Mail holds email addresses and one-time tokens in plain text, so:
//! - the outbox must never be inside the data directory (a copy or backup of the data would
//!   carry them): [`OutboxMailer::open`] refuses it, after resolving both paths absolutely,
//!   `..` and symlinks included;
//! - the outbox directory is created with mode 0700, and each message is written with mode
//!   0600, atomically (temporary file, fsync, rename, fsync of the directory);
//! - SMTP is spoken only over TLS (`smtps://`, or `smtp://…?tls=required`): a token sent in
//!   clear, or over a connection an attacker can downgrade, is a token given away;
//! - nothing here logs an address, a subject or a body, and no error repeats them: the log
//!   says only "mail written to outbox" with the file name, or "mail sent over SMTP". The
//!   `Debug` forms of [`Email`] and [`MailSettings`] hide the recipient, the body and the SMTP
//!   URL (which may carry a password).

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cubby_crypto::key_files::resolve_path;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// The `From` of every message written to the outbox.
pub const OUTBOX_FROM: &str = "cubby@localhost";

/// One outgoing message: plain text to one recipient.
#[derive(Clone, PartialEq, Eq)]
pub struct Email {
    /// A bare address (`name@example.org`), without a display name.
    pub to: String,
    /// One line, no control characters.
    pub subject: String,
    pub body: String,
}

/// Shows the subject only: the recipient and the body (which may hold a token) never reach
/// a log through `{:?}`.
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Email")
            .field("to", &"[hidden]")
            .field("subject", &self.subject)
            .field("body", &format_args!("[{} bytes hidden]", self.body.len()))
            .finish()
    }
}

/// What can go wrong sending mail. No message repeats a recipient, a subject, a body or an
/// SMTP URL (which may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(
        "the mail outbox {outbox} is inside the data directory {data_dir}; mail holds email addresses \
         and tokens in plain text and must never be in the data directory or its backups. Choose an \
         outbox directory outside it."
    )]
    OutboxInsideDataDir { outbox: PathBuf, data_dir: PathBuf },
    #[error("mail outbox {path}: {problem}")]
    Outbox { path: PathBuf, problem: String },
    #[error(
        "the SMTP URL is not usable: {0}. Expected smtps://user:password@host[:port] or \
         smtp://user:password@host[:port]?tls=required (percent-encode special characters in the \
         user and password)"
    )]
    SmtpUrl(String),
    #[error("the sender address (from) for SMTP is not a valid mailbox: {0}")]
    Sender(String),
    #[error("the recipient is not a valid email address")]
    InvalidRecipient,
    #[error("the subject must be one line without control characters")]
    InvalidSubject,
    #[error("the message could not be built: {0}")]
    Build(String),
    #[error("the SMTP server did not take the message: {0}")]
    Smtp(String),
}

impl MailError {
    fn outbox(path: &Path, problem: impl Into<String>) -> Self {
        Self::Outbox { path: path.to_path_buf(), problem: problem.into() }
    }
}

/// Something that sends [`Email`]s.
#[async_trait::async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, email: &Email) -> Result<(), MailError>;
}

/// Where mail goes, as configured.
#[derive(Clone, PartialEq, Eq)]
pub enum MailSettings {
    /// Files in a directory outside the data directory.
    Outbox { dir: PathBuf },
    /// An SMTP server over TLS; `from` is the sender's mailbox (`Cubby <noreply@example.org>`).
    Smtp { url: String, from: String },
}

/// Hides the SMTP URL, which may carry a password.
impl fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Outbox { dir } => f.debug_struct("Outbox").field("dir", dir).finish(),
            Self::Smtp { from, .. } => {
                f.debug_struct("Smtp").field("url", &"[hidden]").field("from", from).finish()
            }
        }
    }
}

/// Builds the mailer the settings ask for. An outbox inside `data_dir` is refused.
pub fn mailer(settings: &MailSettings, data_dir: &Path) -> Result<Arc<dyn Mailer>, MailError> {
    Ok(match settings {
        MailSettings::Outbox { dir } => Arc::new(OutboxMailer::open(dir, data_dir)?),
        MailSettings::Smtp { url, from } => Arc::new(SmtpMailer::new(url, from)?),
    })
}

/// Checks what both mailers need: a bare, valid recipient address and a one-line subject.
fn validate(email: &Email) -> Result<Address, MailError> {
    if email.to.chars().any(char::is_control) {
        return Err(MailError::InvalidRecipient);
    }
    if email.subject.chars().any(char::is_control) {
        return Err(MailError::InvalidSubject);
    }
    email.to.parse::<Address>().map_err(|_| MailError::InvalidRecipient)
}

/// Writes each message as a file in a directory; see the module documentation.
#[derive(Debug)]
pub struct OutboxMailer {
    dir: PathBuf,
}

impl OutboxMailer {
    /// Opens the outbox, creating it (mode 0700) if missing, after checking that it is not
    /// inside `data_dir` and that no one but its owner can write to it.
    pub fn open(dir: &Path, data_dir: &Path) -> Result<Self, MailError> {
        let resolve = |path: &Path| resolve_path(path).map_err(|e| MailError::outbox(path, e.to_string()));
        let dir_abs = resolve(dir)?;
        let data_abs = resolve(data_dir)?;
        if dir_abs.starts_with(&data_abs) {
            return Err(MailError::OutboxInsideDataDir {
                outbox: dir.to_path_buf(),
                data_dir: data_dir.to_path_buf(),
            });
        }
        if !dir_abs.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir_abs)
                .map_err(|e| MailError::outbox(dir, format!("cannot create: {e}")))?;
        }
        let meta = fs::metadata(&dir_abs).map_err(|e| MailError::outbox(dir, format!("cannot read: {e}")))?;
        if !meta.is_dir() {
            return Err(MailError::outbox(dir, "is not a directory"));
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(MailError::outbox(
                dir,
                format!("the outbox is writable by other users; run: chmod 700 {}", dir_abs.display()),
            ));
        }
        Ok(Self { dir: dir_abs })
    }

    /// The outbox directory, absolute.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait::async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        validate(email)?;
        let now = SystemTime::now();
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let random = cubby_crypto::random_bytes::<8>()
            .map_err(|e| MailError::outbox(&self.dir, format!("cannot name a message: {e}")))?;
        let name = format!("{}-{}.eml", since_epoch.as_millis(), hex::encode(random));
        let contents = format!(
            "To: {}\nFrom: {OUTBOX_FROM}\nSubject: {}\nDate: {}\n\n{}",
            email.to,
            email.subject,
            rfc5322_date(since_epoch.as_secs()),
            email.body
        );
        let dir = self.dir.clone();
        let file_name = name.clone();
        tokio::task::spawn_blocking(move || write_private_file(&dir, &file_name, contents.as_bytes()))
            .await
            .map_err(|e| MailError::outbox(&self.dir, format!("the writing task failed: {e}")))??;
        tracing::info!(file = %name, "mail written to outbox");
        Ok(())
    }
}

/// Writes `dir/name` with mode 0600, atomically and durably.
fn write_private_file(dir: &Path, name: &str, contents: &[u8]) -> Result<(), MailError> {
    let path = dir.join(name);
    let temp = dir.join(format!(".{name}.tmp"));
    let fail = |e: std::io::Error| MailError::outbox(&path, format!("cannot write: {e}"));
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp).map_err(fail)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written.and_then(|()| fs::rename(&temp, &path)) {
        let _ = fs::remove_file(&temp);
        return Err(fail(e));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| MailError::outbox(dir, format!("cannot sync: {e}")))
}

/// Reads back the messages in an outbox, oldest first (by file name; messages written in the
/// same millisecond come in no particular order). For tests and operators.
pub fn read_outbox(dir: &Path) -> Result<Vec<Email>, MailError> {
    let fail = |e: std::io::Error| MailError::outbox(dir, format!("cannot read: {e}"));
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(fail)? {
        let name = entry.map_err(fail)?.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with('.') && name.ends_with(".eml") {
            names.push(name.to_owned());
        }
    }
    names.sort();
    names
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let text = fs::read_to_string(&path).map_err(|e| MailError::outbox(&path, format!("cannot read: {e}")))?;
            parse_outbox_file(&text).ok_or_else(|| MailError::outbox(&path, "not an outbox message"))
        })
        .collect()
}

fn parse_outbox_file(text: &str) -> Option<Email> {
    let (head, body) = text.split_once("\n\n")?;
    let header = |name: &str| {
        head.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(": ").map(str::to_owned))
    };
    Some(Email { to: header("To")?, subject: header("Subject")?, body: body.to_owned() })
}

/// An RFC 5322 date in UTC, e.g. `Thu, 01 Jan 1970 00:00:00 +0000`.
fn rfc5322_date(unix_secs: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let weekday = WEEKDAYS.get((days % 7) as usize).copied().unwrap_or("Thu");
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let month = MONTHS.get((month - 1) as usize).copied().unwrap_or("Jan");
    format!(
        "{weekday}, {day:02} {month} {year} {:02}:{:02}:{:02} +0000",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Sends each message to an SMTP server over TLS (lettre, rustls with aws-lc-rs, certificates
/// checked against the operating system's trust store).
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// Hides the transport, which holds the SMTP credentials.
impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// `url` is `smtps://user:password@host[:port]` (TLS from the first byte, port 465 by
    /// default) or `smtp://user:password@host[:port]?tls=required` (STARTTLS, port 587 by
    /// default; refused if the server does not offer it). A path (`smtps://…/client.example`)
    /// sets the EHLO name. Plain `smtp://` and `tls=opportunistic` are refused: they would
    /// send tokens in clear, or let an attacker on the path downgrade the connection.
    /// `from` is the sender's mailbox, e.g. `Cubby <noreply@example.org>`.
    pub fn new(url: &str, from: &str) -> Result<Self, MailError> {
        require_tls(url)?;
        let from: Mailbox = from.parse().map_err(|e| MailError::Sender(format!("{e}")))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailError::SmtpUrl(describe_smtp_error(&e)))?
            .build();
        Ok(Self { transport, from })
    }
}

/// Accepts only URLs for which lettre will insist on TLS. Conservative on purpose: anything
/// that lettre's URL parser might read differently from this check (control characters,
/// whitespace, percent-encoding in the query) is refused rather than guessed at.
fn require_tls(url: &str) -> Result<(), MailError> {
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(MailError::SmtpUrl("it contains whitespace or control characters".into()));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(MailError::SmtpUrl("it does not start with smtps:// or smtp://".into()));
    };
    if scheme.eq_ignore_ascii_case("smtps") {
        return Ok(());
    }
    if !scheme.eq_ignore_ascii_case("smtp") {
        return Err(MailError::SmtpUrl("the scheme must be smtps or smtp".into()));
    }
    let without_fragment = rest.split_once('#').map_or(rest, |(before, _)| before);
    let query = without_fragment.split_once('?').map_or("", |(_, query)| query);
    if query.contains('%') {
        return Err(MailError::SmtpUrl("percent-encoding is not accepted in the query".into()));
    }
    let mut tls = query.split('&').filter_map(|pair| pair.strip_prefix("tls=")).peekable();
    let required = tls.peek().is_some() && tls.all(|value| value == "required");
    if !required {
        return Err(MailError::SmtpUrl(
            "smtp:// must carry ?tls=required (plain or opportunistic SMTP would expose tokens on the \
             network)"
                .into(),
        ));
    }
    Ok(())
}

/// What went wrong. A refusal by the server is told by its code only: the server's text may
/// repeat the recipient's address. Other errors (URL, network, TLS) carry no address and are
/// given in full, since the operator needs them.
fn describe_smtp_error(e: &lettre::transport::smtp::Error) -> String {
    let refusal = if e.is_permanent() {
        "permanently refused"
    } else if e.is_transient() {
        "temporarily refused, try again later"
    } else if e.is_response() {
        "unreadable answer from the server"
    } else {
        return e.to_string();
    };
    match e.status() {
        Some(code) => format!("{refusal} (SMTP code {code})"),
        None => refusal.to_owned(),
    }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        let to = validate(email)?;
        let id = hex::encode(
            cubby_crypto::random_bytes::<16>().map_err(|e| MailError::Build(format!("no Message-ID: {e}")))?,
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(email.subject.clone())
            .message_id(Some(format!("<{id}@{}>", self.from.email.domain())))
            .date_now()
            .header(ContentType::TEXT_PLAIN)
            .body(email.body.clone())
            .map_err(|e| MailError::Build(e.to_string()))?;
        self.transport.send(message).await.map_err(|e| MailError::Smtp(describe_smtp_error(&e)))?;
        tracing::info!("mail sent over SMTP");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn email(to: &str) -> Email {
        Email {
            to: to.to_owned(),
            subject: "Confirm your email".to_owned(),
            body: "Open https://cubby.example/verify?token=abc123 to confirm.\nThanks!\n".to_owned(),
        }
    }

    fn eml_files(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir)? {
            files.push(entry?.path());
        }
        files.sort();
        Ok(files)
    }

    #[tokio::test]
    async fn outbox_writes_one_private_file_per_message_in_a_private_dir() -> TestResult {
        let root = tempfile::tempdir()?;
        let outbox_dir = root.path().join("mail/outbox");
        let mailer = mailer(&MailSettings::Outbox { dir: outbox_dir.clone() }, &root.path().join("data"))?;
        assert_eq!(fs::metadata(&outbox_dir)?.permissions().mode() & 0o777, 0o700);

        mailer.send(&email("parent@example.org")).await?;
        let files = eml_files(&outbox_dir)?;
        assert_eq!(files.len(), 1, "{files:?}");
        let file = files.first().ok_or("no file")?;
        assert_eq!(fs::metadata(file)?.permissions().mode() & 0o777, 0o600);

        let name = file.file_name().and_then(|n| n.to_str()).ok_or("file name")?;
        let (millis, random) = name.strip_suffix(".eml").and_then(|n| n.split_once('-')).ok_or(name.to_owned())?;
        let millis: u128 = millis.parse()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
        assert!(millis <= now && now - millis < 60_000, "{millis} vs {now}");
        assert_eq!(random.len(), 16);
        assert!(random.chars().all(|c| c.is_ascii_hexdigit()), "{random}");

        mailer.send(&email("other@example.org")).await?;
        assert_eq!(eml_files(&outbox_dir)?.len(), 2, "no temporary file is left behind");
        Ok(())
    }

    #[tokio::test]
    async fn outbox_file_is_a_readable_message_holding_the_token() -> TestResult {
        let root = tempfile::tempdir()?;
        let outbox = OutboxMailer::open(&root.path().join("outbox"), &root.path().join("data"))?;
        let sent = email("parent@example.org");
        outbox.send(&sent).await?;
        let file = eml_files(outbox.dir())?.into_iter().next().ok_or("no file")?;
        let text = fs::read_to_string(file)?;
        let (head, body) = text.split_once("\n\n").ok_or("no blank line between headers and body")?;
        let headers: Vec<&str> = head.lines().collect();
        assert_eq!(headers.first(), Some(&"To: parent@example.org"));
        assert_eq!(headers.get(1), Some(&"From: cubby@localhost"));
        assert_eq!(headers.get(2), Some(&"Subject: Confirm your email"));
        let date = headers.get(3).and_then(|h| h.strip_prefix("Date: ")).ok_or("no Date header")?;
        assert!(date.ends_with(" +0000") && date.len() == "Thu, 01 Jan 1970 00:00:00 +0000".len(), "{date}");
        assert_eq!(headers.len(), 4);
        assert_eq!(body, sent.body);
        assert!(text.contains("token=abc123"));
        assert_eq!(read_outbox(outbox.dir())?, vec![sent]);
        Ok(())
    }

    #[tokio::test]
    async fn read_outbox_returns_messages_oldest_first() -> TestResult {
        let root = tempfile::tempdir()?;
        let outbox = OutboxMailer::open(&root.path().join("outbox"), &root.path().join("data"))?;
        let first = Email { body: "first".into(), ..email("a@example.org") };
        let second = Email { body: "second".into(), ..email("b@example.org") };
        outbox.send(&first).await?;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        outbox.send(&second).await?;
        fs::write(outbox.dir().join(".leftover.eml.tmp"), "ignored")?;
        assert_eq!(read_outbox(outbox.dir())?, vec![first, second]);
        Ok(())
    }

    #[test]
    fn outbox_inside_the_data_dir_is_refused_even_through_dot_dot_or_a_symlink() -> TestResult {
        let root = tempfile::tempdir()?;
        let data = root.path().join("data");
        fs::create_dir(&data)?;
        std::os::unix::fs::symlink(&data, root.path().join("link"))?;
        for inside in [
            data.join("outbox"),
            data.clone(),
            root.path().join("other/../data/outbox"),
            root.path().join("link/outbox"),
        ] {
            let settings = MailSettings::Outbox { dir: inside.clone() };
            let err = mailer(&settings, &data).err().ok_or(format!("accepted {}", inside.display()))?;
            assert!(matches!(err, MailError::OutboxInsideDataDir { .. }), "{err}");
            assert!(err.to_string().contains("inside the data directory"), "{err}");
            assert!(!inside.exists() || inside == data, "a refused outbox must not be created");
        }
        // Also when the data directory is named through `..` or does not exist yet.
        let err = OutboxMailer::open(&root.path().join("new-data/outbox"), &root.path().join("x/../new-data"));
        assert!(matches!(err, Err(MailError::OutboxInsideDataDir { .. })), "{err:?}");
        // A sibling whose name merely starts with the data directory's is fine.
        OutboxMailer::open(&root.path().join("data-outbox"), &data)?;
        Ok(())
    }

    #[test]
    fn outbox_writable_by_others_or_not_a_directory_is_refused() -> TestResult {
        let root = tempfile::tempdir()?;
        let shared = root.path().join("shared");
        fs::create_dir(&shared)?;
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777))?;
        let err = OutboxMailer::open(&shared, &root.path().join("data")).err().ok_or("accepted")?;
        assert!(err.to_string().contains("chmod 700"), "{err}");
        let file = root.path().join("file");
        fs::write(&file, "")?;
        let err = OutboxMailer::open(&file, &root.path().join("data")).err().ok_or("accepted")?;
        assert!(err.to_string().contains("not a directory"), "{err}");
        Ok(())
    }

    #[tokio::test]
    async fn header_injection_and_bad_recipients_are_refused_without_writing() -> TestResult {
        let root = tempfile::tempdir()?;
        let outbox = OutboxMailer::open(&root.path().join("outbox"), &root.path().join("data"))?;
        for to in ["not an address", "a@example.org\nBcc: evil@example.org", "a@example.org, b@example.org", ""] {
            let err = outbox.send(&email(to)).await.err().ok_or("accepted")?;
            assert!(matches!(err, MailError::InvalidRecipient), "{err}");
            assert!(!err.to_string().contains("example.org"), "errors never repeat addresses: {err}");
        }
        let injected = Email { subject: "Hi\r\nBcc: evil@example.org".into(), ..email("a@example.org") };
        assert!(matches!(outbox.send(&injected).await, Err(MailError::InvalidSubject)));
        assert!(eml_files(outbox.dir())?.is_empty());
        Ok(())
    }

    #[test]
    fn debug_output_hides_addresses_bodies_and_smtp_passwords() {
        let shown = format!("{:?}", email("parent@example.org"));
        assert!(!shown.contains("parent@") && !shown.contains("abc123"), "{shown}");
        let settings = MailSettings::Smtp { url: "smtps://user:s3cret@mail.example.org".into(), from: "x@example.org".into() };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn malformed_or_cleartext_smtp_urls_are_clear_errors() -> TestResult {
        for url in [
            "not a url",
            "mail.example.org:465",
            "http://mail.example.org",
            "smtps://",
            "smtps://user:pa ss@mail.example.org",
            "smtp://mail.example.org",
            "smtp://mail.example.org?tls=opportunistic",
            "smtp://mail.example.org?tls=required&tls=opportunistic",
            "smtp://mail.example.org?%74ls=opportunistic&tls=required",
            "smtp://mail.example.org#?tls=required",
        ] {
            let err = SmtpMailer::new(url, "Cubby <noreply@example.org>").err().ok_or(format!("accepted {url}"))?;
            assert!(matches!(err, MailError::SmtpUrl(_)), "{url}: {err}");
            let message = err.to_string();
            assert!(message.contains("SMTP URL") && message.contains("smtps://"), "{message}");
        }
        let err = SmtpMailer::new("smtps://user:s3cret@", "noreply@example.org").err().ok_or("accepted")?;
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = SmtpMailer::new("smtps://mail.example.org", "not a mailbox").err().ok_or("accepted")?;
        assert!(matches!(err, MailError::Sender(_)), "{err}");
        Ok(())
    }

    #[tokio::test]
    async fn well_formed_smtp_settings_build_a_mailer_without_connecting() -> TestResult {
        let root = tempfile::tempdir()?;
        for url in ["smtps://user:pass@mail.example.org", "smtp://user:pass@mail.example.org:587?tls=required"] {
            let settings = MailSettings::Smtp { url: url.into(), from: "Cubby <noreply@example.org>".into() };
            mailer(&settings, root.path())?;
        }
        Ok(())
    }

    #[test]
    fn dates_are_rfc_5322() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322_date(1_776_160_000), "Tue, 14 Apr 2026 09:46:40 +0000");
    }
}
