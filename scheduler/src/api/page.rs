//! Cursor pagination shared by every listing: newest first by id (UUIDv7,
//! so id order is creation order); the last id of a page is the cursor of
//! the next.

use uuid::Uuid;

use super::error::{ApiError, ApiResult};

/// Items per page when `limit` is not given.
pub const DEFAULT_PAGE: i64 = 50;
/// Most items per page.
pub const MAX_PAGE: i64 = 1000;

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    /// Return items older than this id.
    pub before: Option<Uuid>,
}

impl Page {
    /// Parses `limit` and `cursor` query parameters.
    ///
    /// # Errors
    /// 400 `invalid_query` for a limit outside 1..=1000, 400 `invalid_cursor`
    /// for a cursor this API did not return.
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> ApiResult<Self> {
        let limit = match limit {
            None => DEFAULT_PAGE,
            Some(s) => s.parse::<i64>().ok().filter(|l| (1..=MAX_PAGE).contains(l)).ok_or_else(|| {
                ApiError::bad_request("invalid_query", format!("limit must be an integer from 1 to {MAX_PAGE}")).with_field("limit")
            })?,
        };
        let before = cursor
            .map(Uuid::parse_str)
            .transpose()
            .map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is not one this API returned").with_field("cursor"))?;
        Ok(Self { limit, before })
    }

    /// Rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Cuts the fetched rows to the page and returns the next cursor, if any.
    pub fn finish<T>(&self, mut rows: Vec<T>, id: impl Fn(&T) -> Uuid) -> (Vec<T>, Option<String>) {
        if rows.len() as i64 > self.limit {
            rows.truncate(self.limit as usize);
            let next = rows.last().map(|r| id(r).to_string());
            (rows, next)
        } else {
            (rows, None)
        }
    }
}
