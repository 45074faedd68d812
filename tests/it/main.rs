//! herald's integration tests, one binary: each module drives real gateways bound to
//! `127.0.0.1:0` (and the shared Redis, or private `redis-server` processes) over HTTP, with
//! what they share in the `herald-testkit` crate. The metrics tests (a process-wide recorder),
//! the crash tests (the real binary, killed), the cluster tests (several processes) and the
//! rate-window tests (timed against Redis, so they run alone) are binaries of their own.

mod budget;
mod callbacks_receipts;
mod channels;
mod cloud_aliyun;
mod cloud_https;
mod cloud_support;
mod cloud_tencent;
mod cloud_twilio;
mod compliance;
mod dispatch_control;
mod edge_hardening;
mod email;
mod failover;
mod fleet_engagement;
mod http_provider;
mod inbound_optout;
mod jobs_api;
mod journey;
mod ledger;
mod openapi;
mod push_apns;
mod push_fcm;
mod push_routing;
mod push_support;
mod reconcile;
mod recovery;
mod redis_gateway;
mod redis_outage;
mod redis_store;
mod redis_work;
mod reports;
mod shutdown;
mod state_hardening;
mod state_outage;
mod store_behaviour;
mod tenant_books;
mod tenant_limits;
mod tenants;
mod throttling;
mod tracking_links;
mod ui;
mod variants;
mod webhooks;
mod wechat_accounts;
mod wechat_api;
mod wechat_events;
