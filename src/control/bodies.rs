//! The JSON bodies of the admin API (and of the portal's calls that share
//! them): what a call takes and what it answers, with the limits the
//! OpenAPI document states.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{AuthType, Client, ClientSecret, Subscription, UsageBucket};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub description: Option<String>,
    pub auth_type: AuthType,
    #[serde(default)]
    #[schema(max_items = 64, value_type = Option<Vec<Scope>>)]
    pub scopes: Option<Vec<String>>,
    /// For `external`: the `name` of an entry of `auth.issuers`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// For `external`: the value of that issuer's `client_claim`.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub external_id: Option<String>,
    /// The account that owns the client (admin API only).
    #[serde(default)]
    pub account_id: Option<String>,
}

/// A scope in the OpenAPI document: 1 to 64 of A-Z a-z 0-9 : . _ - /
pub struct Scope;

impl utoipa::PartialSchema for Scope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(64))
            .pattern(Some(r"^[A-Za-z0-9:._/-]+$"))
            .into()
    }
}

impl ToSchema for Scope {}

/// A new API key, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub id: String,
    pub key: String,
    pub name: String,
    pub prefix: String,
    pub expires_at: Option<i64>,
    /// After a roll: until when the key it replaced keeps working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_valid_until: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedClient {
    #[serde(flatten)]
    pub client: Client,
    /// oauth2 clients only; shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// api_key clients only; shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<CreatedKey>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchClient {
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(max_items = 64, value_type = Option<Vec<Scope>>)]
    pub scopes: Option<Vec<String>>,
    /// Addresses (`203.0.113.0/24`, `2001:db8::1`) the client's credentials
    /// may be used from; `[]` lifts the restriction.
    #[serde(default)]
    #[schema(max_items = 32)]
    pub allowed_cidrs: Option<Vec<String>>,
    /// `Referer`/`Origin` patterns (`https://app.example.com/*`; `*` matches
    /// any run of characters); `[]` lifts the restriction.
    #[serde(default)]
    #[schema(max_items = 32)]
    pub allowed_referers: Option<Vec<String>>,
    /// Read only to be refused (`auth_type` is fixed at creation), so not
    /// in the document.
    #[serde(default)]
    #[schema(ignore)]
    pub auth_type: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientDetail {
    #[serde(flatten)]
    pub client: Client,
    pub subscriptions: Vec<Subscription>,
    /// oauth2 clients: each valid secret with its use (a replaced one
    /// while its grace period runs), never the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<ClientSecret>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollKey {
    /// Seconds during which the old key still works (default 0: it stops
    /// at once; at most 30 days).
    #[serde(default)]
    pub grace_period_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UsageQuery {
    /// Unix seconds or RFC 3339; default: `to` minus 7 days.
    pub from: Option<String>,
    /// Unix seconds or RFC 3339; default: now.
    pub to: Option<String>,
    /// `hour` (default) or `day`.
    pub step: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub buckets: Vec<UsageBucket>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewClientSecret {
    pub client_id: String,
    pub client_secret: String,
    /// Until when the previous secret keeps working, if a grace period was asked for.
    pub previous_valid_until: Option<i64>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// Seconds during which the previous secret still works (default 0).
    #[serde(default)]
    pub grace_period_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: Option<String>,
    #[serde(default)]
    pub never_expires: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    pub client_id: String,
    pub service: String,
    #[serde(default)]
    pub plan: Option<String>,
}
