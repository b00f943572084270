use async_trait::async_trait;
use cubby_core::{ChildId, FamilyId};

use super::{BeginWrite, SqlStore, parse_id, parse_opt_id};
use crate::content::{
    ApprovalRow, ContentStore, DownloadRow, FileStored, NewApproval, NewPackage, PackageRow, PublisherRow,
    PublisherStat, Submitted,
};
use crate::StoreError;

type PackageTuple = (String, String, String, String, String, Vec<u8>, Vec<u8>, i64, Option<i64>);
type ApprovalTuple = (String, String, String, i64, Option<i64>, Option<i64>, Option<String>);
type DownloadTuple = (String, Option<String>, String, String, String, String, i64);

macro_rules! select_package {
    () => {
        "SELECT p.package_id, p.version, p.publisher_id, u.name, p.kind, p.manifest, p.signature, p.created_at, \
         p.published_at FROM packages p JOIN publishers u ON u.id = p.publisher_id"
    };
}

macro_rules! select_approval {
    () => {
        "SELECT a.family_id, a.child_id, a.package_id, a.approved_at, e.granted_at, e.price_cents, e.currency \
         FROM title_approvals a LEFT JOIN title_entitlements e ON e.child_id = a.child_id AND e.package_id = a.package_id"
    };
}

fn package_from(row: PackageTuple) -> PackageRow {
    let (package_id, version, publisher_id, publisher_name, kind, manifest, signature, created_at, published_at) = row;
    PackageRow { package_id, version, publisher_id, publisher_name, kind, manifest, signature, created_at, published_at }
}

fn approval_from(row: ApprovalTuple) -> Result<ApprovalRow, StoreError> {
    let (family_id, child_id, package_id, approved_at, granted_at, price_cents, currency) = row;
    Ok(ApprovalRow {
        family_id: parse_id(&family_id)?,
        child_id: parse_id(&child_id)?,
        package_id,
        approved_at,
        granted_at,
        price_cents,
        currency,
    })
}

fn download_from(row: DownloadTuple) -> Result<DownloadRow, StoreError> {
    let (family_id, child_id, device_id, package_id, version, publisher_id, at) = row;
    Ok(DownloadRow {
        family_id: parse_id(&family_id)?,
        child_id: parse_opt_id(child_id)?,
        device_id: parse_id(&device_id)?,
        package_id,
        version,
        publisher_id,
        at,
    })
}

#[async_trait]
impl ContentStore for SqlStore {
    async fn add_publisher(&self, publisher: &PublisherRow) -> Result<bool, StoreError> {
        let added = on_pool!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO publishers (id, name, public_key, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&publisher.id)
            .bind(&publisher.name)
            .bind(&publisher.public_key)
            .bind(publisher.created_at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(added == 1)
    }

    async fn publisher(&self, id: &str) -> Result<Option<PublisherRow>, StoreError> {
        let row: Option<(String, String, Vec<u8>, i64)> = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT id, name, public_key, created_at FROM publishers WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(|(id, name, public_key, created_at)| PublisherRow { id, name, public_key, created_at }))
    }

    async fn publisher_stats(&self) -> Result<Vec<PublisherStat>, StoreError> {
        let rows: Vec<(String, String, String, i64, i64)> = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT p.publisher_id, p.package_id, p.version, COALESCE(c.downloads, 0), COALESCE(c.approvals, 0) \
                 FROM packages p LEFT JOIN package_counts c ON c.package_id = p.package_id AND c.version = p.version \
                 WHERE p.published_at IS NOT NULL \
                 ORDER BY p.publisher_id, p.package_id, p.major, p.minor, p.patch",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(publisher_id, package_id, version, downloads, approvals)| PublisherStat {
                publisher_id,
                package_id,
                version,
                downloads,
                approvals,
            })
            .collect())
    }

    async fn submit_package(&self, package: &NewPackage) -> Result<Submitted, StoreError> {
        let submitted = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            // The insert first: SQLite takes its write lock before anything is read, and the
            // primary key settles a race between two submissions of the same version.
            let inserted = sqlx::query(
                "INSERT INTO packages (package_id, version, major, minor, patch, publisher_id, kind, manifest, \
                 signature, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&package.package_id)
            .bind(&package.version)
            .bind(package.major)
            .bind(package.minor)
            .bind(package.patch)
            .bind(&package.publisher_id)
            .bind(&package.kind)
            .bind(&package.manifest)
            .bind(&package.signature)
            .bind(package.created_at)
            .execute(&mut *tx)
            .await;
            match inserted.map_err(StoreError::from_write) {
                Ok(_) => {}
                Err(StoreError::Conflict) => return Ok(Submitted::NotNewer),
                Err(error) => return Err(error),
            }
            sqlx::query("INSERT INTO package_owners (package_id, publisher_id) VALUES ($1, $2) ON CONFLICT (package_id) DO NOTHING")
                .bind(&package.package_id)
                .bind(&package.publisher_id)
                .execute(&mut *tx)
                .await?;
            let (owner,): (String,) = sqlx::query_as("SELECT publisher_id FROM package_owners WHERE package_id = $1")
                .bind(&package.package_id)
                .fetch_one(&mut *tx)
                .await?;
            if owner != package.publisher_id {
                tx.rollback().await?;
                return Ok(Submitted::OtherPublisher);
            }
            let (newer,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM packages WHERE package_id = $1 AND version <> $2 \
                 AND (major > $3 OR (major = $3 AND (minor > $4 OR (minor = $4 AND patch >= $5))))",
            )
            .bind(&package.package_id)
            .bind(&package.version)
            .bind(package.major)
            .bind(package.minor)
            .bind(package.patch)
            .fetch_one(&mut *tx)
            .await?;
            if newer > 0 {
                tx.rollback().await?;
                return Ok(Submitted::NotNewer);
            }
            for (index, (size, sha256)) in package.files.iter().enumerate() {
                sqlx::query("INSERT INTO package_files (package_id, version, idx, size, sha256) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&package.package_id)
                    .bind(&package.version)
                    .bind(i64::try_from(index).unwrap_or(i64::MAX))
                    .bind(*size)
                    .bind(sha256)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<Submitted, StoreError>(Submitted::Created)
        })?;
        Ok(submitted)
    }

    async fn package(&self, package_id: &str, version: &str) -> Result<Option<PackageRow>, StoreError> {
        let row: Option<PackageTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!(select_package!(), " WHERE p.package_id = $1 AND p.version = $2"))
                .bind(package_id)
                .bind(version)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(package_from))
    }

    async fn missing_files(&self, package_id: &str, version: &str) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<(i64,)> = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT idx FROM package_files WHERE package_id = $1 AND version = $2 AND stored_at IS NULL ORDER BY idx",
            )
            .bind(package_id)
            .bind(version)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows.into_iter().map(|(i,)| i).collect())
    }

    async fn record_file(&self, package_id: &str, version: &str, index: i64, now: i64) -> Result<FileStored, StoreError> {
        let outcome = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let recorded = sqlx::query(
                "UPDATE package_files SET stored_at = $4 \
                 WHERE package_id = $1 AND version = $2 AND idx = $3 AND stored_at IS NULL",
            )
            .bind(package_id)
            .bind(version)
            .bind(index)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if recorded == 0 {
                let (exists,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM package_files WHERE package_id = $1 AND version = $2 AND idx = $3",
                )
                .bind(package_id)
                .bind(version)
                .bind(index)
                .fetch_one(&mut *tx)
                .await?;
                tx.rollback().await?;
                return Ok(if exists > 0 { FileStored::AlreadyStored } else { FileStored::Unknown });
            }
            let (missing,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM package_files WHERE package_id = $1 AND version = $2 AND stored_at IS NULL",
            )
            .bind(package_id)
            .bind(version)
            .fetch_one(&mut *tx)
            .await?;
            let published = if missing == 0 {
                sqlx::query(
                    "UPDATE packages SET published_at = $3 WHERE package_id = $1 AND version = $2 AND published_at IS NULL",
                )
                .bind(package_id)
                .bind(version)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1
            } else {
                false
            };
            tx.commit().await?;
            Ok::<FileStored, StoreError>(FileStored::Recorded { published })
        })?;
        Ok(outcome)
    }

    async fn published_packages(&self) -> Result<Vec<PackageRow>, StoreError> {
        let rows: Vec<PackageTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!(
                select_package!(),
                " WHERE p.published_at IS NOT NULL ORDER BY p.package_id, p.major, p.minor, p.patch"
            ))
            .fetch_all(pool)
            .await
        })?;
        Ok(rows.into_iter().map(package_from).collect())
    }

    async fn approve_title(&self, approval: &NewApproval) -> Result<ApprovalRow, StoreError> {
        let row: ApprovalTuple = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let new = sqlx::query(
                "INSERT INTO title_approvals (family_id, child_id, package_id, approved_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (child_id, package_id) DO NOTHING",
            )
            .bind(approval.family_id.to_string())
            .bind(approval.child_id.to_string())
            .bind(&approval.package_id)
            .bind(approval.at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if new {
                sqlx::query(
                    "INSERT INTO title_entitlements (family_id, child_id, package_id, granted_at, price_cents, currency) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (child_id, package_id) DO NOTHING",
                )
                .bind(approval.family_id.to_string())
                .bind(approval.child_id.to_string())
                .bind(&approval.package_id)
                .bind(approval.at)
                .bind(approval.price_cents)
                .bind(&approval.currency)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO package_counts (publisher_id, package_id, version, downloads, approvals) \
                     VALUES ($1, $2, $3, 0, 1) ON CONFLICT (package_id, version) \
                     DO UPDATE SET approvals = package_counts.approvals + 1",
                )
                .bind(&approval.publisher_id)
                .bind(&approval.package_id)
                .bind(&approval.version)
                .execute(&mut *tx)
                .await?;
            }
            let row: ApprovalTuple =
                sqlx::query_as(concat!(select_approval!(), " WHERE a.child_id = $1 AND a.package_id = $2"))
                    .bind(approval.child_id.to_string())
                    .bind(&approval.package_id)
                    .fetch_one(&mut *tx)
                    .await?;
            tx.commit().await?;
            Ok::<ApprovalTuple, StoreError>(row)
        })?;
        approval_from(row)
    }

    async fn withdraw_title(&self, family: FamilyId, child: ChildId, package_id: &str) -> Result<bool, StoreError> {
        let withdrawn = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query("DELETE FROM title_approvals WHERE family_id = $1 AND child_id = $2 AND package_id = $3")
                .bind(family.to_string())
                .bind(child.to_string())
                .bind(package_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM title_entitlements WHERE family_id = $1 AND child_id = $2 AND package_id = $3")
                .bind(family.to_string())
                .bind(child.to_string())
                .bind(package_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<bool, StoreError>(n > 0)
        })?;
        Ok(withdrawn)
    }

    async fn child_approvals(&self, family: FamilyId, child: ChildId) -> Result<Vec<ApprovalRow>, StoreError> {
        let rows: Vec<ApprovalTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!(
                select_approval!(),
                " WHERE a.family_id = $1 AND a.child_id = $2 ORDER BY a.approved_at, a.package_id"
            ))
            .bind(family.to_string())
            .bind(child.to_string())
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(approval_from).collect()
    }

    async fn family_approvals(&self, family: FamilyId) -> Result<Vec<ApprovalRow>, StoreError> {
        let rows: Vec<ApprovalTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!(select_approval!(), " WHERE a.family_id = $1 ORDER BY a.child_id, a.approved_at, a.package_id"))
                .bind(family.to_string())
                .fetch_all(pool)
                .await
        })?;
        rows.into_iter().map(approval_from).collect()
    }

    async fn record_download(&self, download: &DownloadRow) -> Result<bool, StoreError> {
        let new = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let new = sqlx::query(
                "INSERT INTO package_downloads (family_id, child_id, device_id, package_id, version, at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id, package_id, version) DO NOTHING",
            )
            .bind(download.family_id.to_string())
            .bind(download.child_id.map(|c| c.to_string()))
            .bind(download.device_id.to_string())
            .bind(&download.package_id)
            .bind(&download.version)
            .bind(download.at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if new {
                sqlx::query(
                    "INSERT INTO package_counts (publisher_id, package_id, version, downloads, approvals) \
                     VALUES ($1, $2, $3, 1, 0) ON CONFLICT (package_id, version) \
                     DO UPDATE SET downloads = package_counts.downloads + 1",
                )
                .bind(&download.publisher_id)
                .bind(&download.package_id)
                .bind(&download.version)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<bool, StoreError>(new)
        })?;
        Ok(new)
    }

    async fn family_downloads(&self, family: FamilyId) -> Result<Vec<DownloadRow>, StoreError> {
        let rows: Vec<DownloadTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT d.family_id, d.child_id, d.device_id, d.package_id, d.version, p.publisher_id, d.at \
                 FROM package_downloads d JOIN packages p ON p.package_id = d.package_id AND p.version = d.version \
                 WHERE d.family_id = $1 ORDER BY d.at, d.package_id",
            )
            .bind(family.to_string())
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(download_from).collect()
    }
}
