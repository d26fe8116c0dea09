//! `concierge customers …`: the customers domain from the command line,
//! through the gateway, as any SDK user would call it.

use clap::Subcommand;
use concierge_common::money;
use concierge_proto::customers::*;
use concierge_proto::types::{ContactChannel, PostalAddress};
use prost_types::FieldMask;

use super::ClientArgs;
use crate::output::{self, Answer, ListArgs, paged, parse_enum, short};

/// "acme" or "accounts/acme" → "accounts/acme".
pub fn account_name(s: &str) -> String {
    if s.starts_with("accounts/") {
        s.to_string()
    } else {
        format!("accounts/{s}")
    }
}

/// "ayse" or "staff/ayse" → "staff/ayse".
pub fn staff_name(s: &str) -> String {
    if s.starts_with("staff/") {
        s.to_string()
    } else {
        format!("staff/{s}")
    }
}

fn tier(v: &str) -> anyhow::Result<i32> {
    parse_enum(
        v,
        "TIER_",
        |s| Tier::from_str_name(s).map(|t| t as i32),
        "tier (standard, premium, enterprise, strategic)",
    )
}

#[derive(clap::Args, Default)]
pub struct AccountFields {
    #[arg(long)]
    display_name: Option<String>,
    /// standard, premium, enterprise or strategic.
    #[arg(long)]
    tier: Option<String>,
    /// The owning account manager, "staff/{id}".
    #[arg(long)]
    account_manager: Option<String>,
    /// Monthly recurring charge, e.g. "30000.00 USD".
    #[arg(long)]
    mrc: Option<String>,
    #[arg(long)]
    billing_account: Option<String>,
    /// IANA time zone, e.g. America/Chicago.
    #[arg(long)]
    time_zone: Option<String>,
    /// BCP-47 language, e.g. en, tr.
    #[arg(long)]
    language: Option<String>,
}

impl AccountFields {
    /// The account these flags describe and the mask of what they set.
    fn build(&self) -> anyhow::Result<(Account, Vec<String>)> {
        let mut a = Account::default();
        let mut mask = Vec::new();
        if let Some(v) = &self.display_name {
            a.display_name = v.clone();
            mask.push("display_name");
        }
        if let Some(v) = &self.tier {
            a.tier = tier(v)?;
            mask.push("tier");
        }
        if let Some(v) = &self.account_manager {
            a.account_manager = if v.is_empty() {
                String::new()
            } else {
                staff_name(v)
            };
            mask.push("account_manager");
        }
        if let Some(v) = &self.mrc {
            a.mrc = Some(money::parse(v)?);
            mask.push("mrc");
        }
        if let Some(v) = &self.billing_account {
            a.billing_account = v.clone();
            mask.push("billing_account");
        }
        if let Some(v) = &self.time_zone {
            a.time_zone = v.clone();
            mask.push("time_zone");
        }
        if let Some(v) = &self.language {
            a.language_code = v.clone();
            mask.push("language_code");
        }
        Ok((a, mask.into_iter().map(String::from).collect()))
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Create an account.
    Create {
        /// The account id (the last part of its name); generated when absent.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        fields: AccountFields,
        /// Idempotency key: retrying with it creates once.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Show an account.
    Get { account: String },
    /// List accounts.
    ///
    /// Examples: a portfolio, big accounts first,
    ///   --filter 'account_manager = "staff/ayse"' --order-by 'mrc.minor_units desc'
    /// and the large enterprise accounts,
    ///   --filter 'tier = ENTERPRISE AND mrc.minor_units >= 3000000'
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        list: ListArgs,
        #[arg(long)]
        show_deleted: bool,
    },
    /// Change the fields given as flags.
    Update {
        account: String,
        #[command(flatten)]
        fields: AccountFields,
        /// Refuse if the account changed since this etag was read.
        #[arg(long)]
        etag: Option<String>,
    },
    /// Soft-delete an account (undelete brings it back).
    Delete {
        account: String,
        #[arg(long)]
        etag: Option<String>,
    },
    /// Restore a soft-deleted account.
    Undelete { account: String },
    /// Service locations of an account.
    Sites {
        #[command(subcommand)]
        command: SitesCommand,
    },
    /// Voice, data and hardware at a site.
    Inventory {
        #[command(subcommand)]
        command: InventoryCommand,
    },
    /// People at the client.
    Contacts {
        #[command(subcommand)]
        command: ContactsCommand,
    },
    /// The staff directory (portfolios and escalation chains).
    Staff {
        #[command(subcommand)]
        command: StaffCommand,
    },
}

#[derive(Subcommand)]
pub enum SitesCommand {
    Create {
        account: String,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        display_name: String,
        #[arg(long)]
        time_zone: String,
        /// CLDR region code, e.g. US.
        #[arg(long, default_value = "")]
        region: String,
        #[arg(long, default_value = "")]
        locality: String,
        #[arg(long, default_value = "")]
        postal_code: String,
        #[arg(long = "address-line")]
        address_lines: Vec<String>,
    },
    /// List an account's sites.
    ///
    /// Example: --filter 'time_zone = "America/Chicago"' --order-by 'display_name'
    #[command(verbatim_doc_comment)]
    List {
        account: String,
        #[command(flatten)]
        list: ListArgs,
    },
}

#[derive(Subcommand)]
pub enum InventoryCommand {
    Create {
        /// The site, "accounts/{a}/sites/{s}".
        site: String,
        #[arg(long)]
        id: Option<String>,
        /// voice, data or hardware.
        #[arg(long)]
        kind: String,
        /// e.g. "Dedicated Internet 10 Mb".
        #[arg(long)]
        product: String,
        /// primary, secondary or backup.
        #[arg(long)]
        role: Option<String>,
        #[arg(long, default_value = "")]
        carrier: String,
        #[arg(long, default_value = "")]
        circuit_id: String,
        #[arg(long, default_value_t = 0)]
        bandwidth_kbps: i64,
        /// Setting a tool marks the item monitored.
        #[arg(long)]
        monitoring_tool: Option<String>,
        #[arg(long)]
        mrc: Option<String>,
    },
    /// List a site's inventory, or a whole account's with "accounts/{a}/sites/-".
    ///
    /// Example: the backups nobody monitors,
    ///   --filter 'role = BACKUP AND monitored = false'
    #[command(verbatim_doc_comment)]
    List {
        site: String,
        #[command(flatten)]
        list: ListArgs,
    },
}

#[derive(Subcommand)]
pub enum ContactsCommand {
    Create {
        account: String,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        display_name: String,
        #[arg(long, default_value = "")]
        email: String,
        #[arg(long, default_value = "")]
        phone: String,
        /// primary, billing, technical or executive; repeatable.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// This contact receives updates on the client's behalf.
        #[arg(long)]
        client_delegate: bool,
        /// phone, email, chat, social, ivr, portal or meeting.
        #[arg(long)]
        preferred_channel: Option<String>,
        #[arg(long, default_value = "")]
        language: String,
    },
    /// List an account's contacts.
    ///
    /// Example: who receives updates for the client, --filter 'client_delegate = true'
    #[command(verbatim_doc_comment)]
    List {
        account: String,
        #[command(flatten)]
        list: ListArgs,
    },
}

#[derive(Subcommand)]
pub enum StaffCommand {
    Create {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        display_name: String,
        #[arg(long)]
        email: String,
        /// agent, senior_agent, specialist, account_manager, manager or director.
        #[arg(long)]
        role: String,
        /// "staff/{id}" of the manager (the next escalation step).
        #[arg(long)]
        manager: Option<String>,
        #[arg(long, default_value = "")]
        team: String,
    },
    /// List the staff directory.
    ///
    /// Example: --filter 'role = ACCOUNT_MANAGER AND active = true' --order-by 'display_name'
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// The escalation chain above a staff member.
    Chain { staff_member: String },
}

fn print<M: prost::Message + prost::Name>(
    json: bool,
    message: &M,
    text: impl FnOnce(&M) -> String,
) -> anyhow::Result<()> {
    output::emit(json, message, |m| println!("{}", text(m)))
}

fn mrc_text(m: &Option<concierge_proto::types::Money>) -> String {
    m.as_ref().map(money::format).unwrap_or_default()
}

fn account_text(a: &Account) -> String {
    let state = account::State::try_from(a.state)
        .map(|s| short(s.as_str_name(), "STATE_"))
        .unwrap_or_default();
    let tier = Tier::try_from(a.tier)
        .map(|t| short(t.as_str_name(), "TIER_"))
        .unwrap_or_default();
    format!(
        "{}  {}\n  tier: {tier}  account manager: {}  MRC: {}\n  time zone: {}  billing account: {}  state: {state}  etag: {}",
        a.name,
        a.display_name,
        if a.account_manager.is_empty() {
            "-"
        } else {
            &a.account_manager
        },
        mrc_text(&a.mrc),
        a.time_zone,
        if a.billing_account.is_empty() {
            "-"
        } else {
            &a.billing_account
        },
        a.etag
    )
}

/// Calls a list method page by page (all pages with --all).
pub async fn run(command: Command, args: &ClientArgs) -> anyhow::Result<()> {
    let client = args.client()?;
    let mut c = client.customers();
    let json = args.json;
    match command {
        Command::Create {
            id,
            fields,
            request_id,
        } => {
            let (account, _) = fields.build()?;
            let a = c
                .create_account(CreateAccountRequest {
                    account: Some(account),
                    account_id: id.unwrap_or_default(),
                    request_id: request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                })
                .await
                .answer()?;
            print(json, &a, account_text)
        }
        Command::Get { account } => {
            let a = c
                .get_account(GetAccountRequest {
                    name: account_name(&account),
                })
                .await
                .answer()?;
            print(json, &a, account_text)
        }
        Command::List { list, show_deleted } => {
            let req = ListAccountsRequest {
                page_size: list.page_size,
                page_token: list.page_token.clone(),
                filter: list.filter.clone(),
                order_by: list.order_by.clone(),
                show_deleted,
            };
            let (accounts, next) = paged!(list, req, c.list_accounts, accounts);
            let resp = ListAccountsResponse {
                accounts,
                next_page_token: next,
            };
            print(json, &resp, |r| {
                let rows: Vec<Vec<String>> = r
                    .accounts
                    .iter()
                    .map(|a| {
                        vec![
                            a.name.clone(),
                            a.display_name.clone(),
                            Tier::try_from(a.tier)
                                .map(|t| short(t.as_str_name(), "TIER_"))
                                .unwrap_or_default(),
                            a.account_manager.clone(),
                            mrc_text(&a.mrc),
                            account::State::try_from(a.state)
                                .map(|s| short(s.as_str_name(), "STATE_"))
                                .unwrap_or_default(),
                        ]
                    })
                    .collect();
                let mut out = output::table(
                    &[
                        "NAME",
                        "DISPLAY NAME",
                        "TIER",
                        "ACCOUNT MANAGER",
                        "MRC",
                        "STATE",
                    ],
                    &rows,
                );
                out.push_str(&output::next_page(&r.next_page_token));
                out
            })
        }
        Command::Update {
            account,
            fields,
            etag,
        } => {
            let (mut a, mask) = fields.build()?;
            if mask.is_empty() {
                anyhow::bail!("nothing to change: give at least one field flag");
            }
            a.name = account_name(&account);
            a.etag = etag.unwrap_or_default();
            let a = c
                .update_account(UpdateAccountRequest {
                    account: Some(a),
                    update_mask: Some(FieldMask { paths: mask }),
                })
                .await
                .answer()?;
            print(json, &a, account_text)
        }
        Command::Delete { account, etag } => {
            let a = c
                .delete_account(DeleteAccountRequest {
                    name: account_name(&account),
                    etag: etag.unwrap_or_default(),
                })
                .await
                .answer()?;
            print(json, &a, account_text)
        }
        Command::Undelete { account } => {
            let a = c
                .undelete_account(UndeleteAccountRequest {
                    name: account_name(&account),
                    etag: String::new(),
                })
                .await
                .answer()?;
            print(json, &a, account_text)
        }
        Command::Sites { command } => match command {
            SitesCommand::Create {
                account,
                id,
                display_name,
                time_zone,
                region,
                locality,
                postal_code,
                address_lines,
            } => {
                let s = c
                    .create_site(CreateSiteRequest {
                        parent: account_name(&account),
                        site: Some(Site {
                            display_name,
                            time_zone,
                            address: Some(PostalAddress {
                                region_code: region,
                                postal_code,
                                locality,
                                address_lines,
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        site_id: id.unwrap_or_default(),
                        request_id: uuid::Uuid::new_v4().to_string(),
                    })
                    .await
                    .answer()?;
                print(json, &s, |s| {
                    format!("{}  {}  ({})", s.name, s.display_name, s.time_zone)
                })
            }
            SitesCommand::List { account, list } => {
                let req = ListSitesRequest {
                    parent: account_name(&account),
                    page_size: list.page_size,
                    page_token: list.page_token.clone(),
                    filter: list.filter.clone(),
                    order_by: list.order_by.clone(),
                };
                let (sites, next) = paged!(list, req, c.list_sites, sites);
                let resp = ListSitesResponse {
                    sites,
                    next_page_token: next,
                };
                print(json, &resp, |r| {
                    let rows: Vec<Vec<String>> = r
                        .sites
                        .iter()
                        .map(|s| vec![s.name.clone(), s.display_name.clone(), s.time_zone.clone()])
                        .collect();
                    output::table(&["NAME", "DISPLAY NAME", "TIME ZONE"], &rows)
                })
            }
        },
        Command::Inventory { command } => match command {
            InventoryCommand::Create {
                site,
                id,
                kind,
                product,
                role,
                carrier,
                circuit_id,
                bandwidth_kbps,
                monitoring_tool,
                mrc,
            } => {
                let item = InventoryItem {
                    kind: parse_enum(
                        &kind,
                        "INVENTORY_KIND_",
                        |s| InventoryKind::from_str_name(s).map(|v| v as i32),
                        "kind (voice, data, hardware)",
                    )?,
                    product,
                    role: match role {
                        Some(r) => parse_enum(
                            &r,
                            "INVENTORY_ROLE_",
                            |s| InventoryRole::from_str_name(s).map(|v| v as i32),
                            "role (primary, secondary, backup)",
                        )?,
                        None => 0,
                    },
                    carrier,
                    circuit_id,
                    bandwidth_kbps,
                    monitored: monitoring_tool.is_some(),
                    monitoring_tool: monitoring_tool.unwrap_or_default(),
                    mrc: mrc.map(|m| money::parse(&m)).transpose()?,
                    state: inventory_item::State::Active as i32,
                    ..Default::default()
                };
                let i = c
                    .create_inventory_item(CreateInventoryItemRequest {
                        parent: site,
                        inventory_item: Some(item),
                        inventory_item_id: id.unwrap_or_default(),
                        request_id: uuid::Uuid::new_v4().to_string(),
                    })
                    .await
                    .answer()?;
                print(json, &i, |i| format!("{}  {}", i.name, i.product))
            }
            InventoryCommand::List { site, list } => {
                let req = ListInventoryItemsRequest {
                    parent: site,
                    page_size: list.page_size,
                    page_token: list.page_token.clone(),
                    filter: list.filter.clone(),
                    order_by: list.order_by.clone(),
                };
                let (inventory_items, next) =
                    paged!(list, req, c.list_inventory_items, inventory_items);
                let resp = ListInventoryItemsResponse {
                    inventory_items,
                    next_page_token: next,
                };
                print(json, &resp, |r| {
                    let rows: Vec<Vec<String>> = r
                        .inventory_items
                        .iter()
                        .map(|i| {
                            vec![
                                i.name.clone(),
                                InventoryKind::try_from(i.kind)
                                    .map(|k| short(k.as_str_name(), "INVENTORY_KIND_"))
                                    .unwrap_or_default(),
                                i.product.clone(),
                                InventoryRole::try_from(i.role)
                                    .map(|k| short(k.as_str_name(), "INVENTORY_ROLE_"))
                                    .unwrap_or_default(),
                                i.carrier.clone(),
                                i.circuit_id.clone(),
                                if i.monitored {
                                    i.monitoring_tool.clone()
                                } else {
                                    "-".into()
                                },
                                mrc_text(&i.mrc),
                            ]
                        })
                        .collect();
                    output::table(
                        &[
                            "NAME",
                            "KIND",
                            "PRODUCT",
                            "ROLE",
                            "CARRIER",
                            "CIRCUIT",
                            "MONITORING",
                            "MRC",
                        ],
                        &rows,
                    )
                })
            }
        },
        Command::Contacts { command } => match command {
            ContactsCommand::Create {
                account,
                id,
                display_name,
                email,
                phone,
                roles,
                client_delegate,
                preferred_channel,
                language,
            } => {
                let roles = roles
                    .iter()
                    .map(|r| {
                        parse_enum(
                            r,
                            "CONTACT_ROLE_",
                            |s| ContactRole::from_str_name(s).map(|v| v as i32),
                            "contact role (primary, billing, technical, executive)",
                        )
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let contact = Contact {
                    display_name,
                    email,
                    phone,
                    roles,
                    client_delegate,
                    preferred_channel: match preferred_channel {
                        Some(ch) => parse_enum(
                            &ch,
                            "CONTACT_CHANNEL_",
                            |s| ContactChannel::from_str_name(s).map(|v| v as i32),
                            "channel",
                        )?,
                        None => 0,
                    },
                    language_code: language,
                    ..Default::default()
                };
                let ct = c
                    .create_contact(CreateContactRequest {
                        parent: account_name(&account),
                        contact: Some(contact),
                        contact_id: id.unwrap_or_default(),
                        request_id: uuid::Uuid::new_v4().to_string(),
                    })
                    .await
                    .answer()?;
                print(json, &ct, |c| {
                    format!("{}  {}  {}", c.name, c.display_name, c.email)
                })
            }
            ContactsCommand::List { account, list } => {
                let req = ListContactsRequest {
                    parent: account_name(&account),
                    page_size: list.page_size,
                    page_token: list.page_token.clone(),
                    filter: list.filter.clone(),
                    order_by: list.order_by.clone(),
                };
                let (contacts, next) = paged!(list, req, c.list_contacts, contacts);
                let resp = ListContactsResponse {
                    contacts,
                    next_page_token: next,
                };
                print(json, &resp, |r| {
                    let rows: Vec<Vec<String>> = r
                        .contacts
                        .iter()
                        .map(|c| {
                            vec![
                                c.name.clone(),
                                c.display_name.clone(),
                                c.email.clone(),
                                c.phone.clone(),
                                if c.client_delegate {
                                    "yes".into()
                                } else {
                                    String::new()
                                },
                            ]
                        })
                        .collect();
                    output::table(
                        &["NAME", "DISPLAY NAME", "EMAIL", "PHONE", "DELEGATE"],
                        &rows,
                    )
                })
            }
        },
        Command::Staff { command } => match command {
            StaffCommand::Create {
                id,
                display_name,
                email,
                role,
                manager,
                team,
            } => {
                let member = StaffMember {
                    display_name,
                    email,
                    role: parse_enum(
                        &role,
                        "STAFF_ROLE_",
                        |s| StaffRole::from_str_name(s).map(|v| v as i32),
                        "staff role",
                    )?,
                    manager: manager.map(|m| staff_name(&m)).unwrap_or_default(),
                    team,
                    active: true,
                    ..Default::default()
                };
                let s = c
                    .create_staff_member(CreateStaffMemberRequest {
                        staff_member: Some(member),
                        staff_member_id: id.unwrap_or_default(),
                        request_id: uuid::Uuid::new_v4().to_string(),
                    })
                    .await
                    .answer()?;
                print(json, &s, |s| {
                    format!("{}  {}  {}", s.name, s.display_name, s.email)
                })
            }
            StaffCommand::List { list } => {
                let req = ListStaffMembersRequest {
                    page_size: list.page_size,
                    page_token: list.page_token.clone(),
                    filter: list.filter.clone(),
                    order_by: list.order_by.clone(),
                };
                let (staff_members, next) = paged!(list, req, c.list_staff_members, staff_members);
                let resp = ListStaffMembersResponse {
                    staff_members,
                    next_page_token: next,
                };
                print(json, &resp, |r| {
                    let rows: Vec<Vec<String>> = r
                        .staff_members
                        .iter()
                        .map(|s| {
                            vec![
                                s.name.clone(),
                                s.display_name.clone(),
                                StaffRole::try_from(s.role)
                                    .map(|k| short(k.as_str_name(), "STAFF_ROLE_"))
                                    .unwrap_or_default(),
                                s.manager.clone(),
                                s.team.clone(),
                            ]
                        })
                        .collect();
                    output::table(&["NAME", "DISPLAY NAME", "ROLE", "MANAGER", "TEAM"], &rows)
                })
            }
            StaffCommand::Chain { staff_member } => {
                let chain = c
                    .get_escalation_chain(GetEscalationChainRequest {
                        name: staff_name(&staff_member),
                    })
                    .await
                    .answer()?;
                print(json, &chain, |ch| {
                    let mut out = ch.staff_member.clone();
                    for m in &ch.managers {
                        out.push_str(&format!("\n  → {}  {}", m.name, m.display_name));
                    }
                    out
                })
            }
        },
    }
}
