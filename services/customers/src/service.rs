//! The gRPC face of the customers service: each method unpacks its request
//! and hands it to the generic resource operations in `lib.rs`.

use concierge_common::clock;
use concierge_common::error::{Error, Result};
use concierge_proto::catalogue;
use concierge_proto::customers::customers_service_server::CustomersService;
use concierge_proto::customers::*;
use tonic::{Request, Response};

use concierge_common::crud::{New, Reply, reply};
use concierge_common::{page_query, without_request_id};

use crate::{Customers, Rules};

#[tonic::async_trait]
impl CustomersService for Customers {
    async fn create_account(&self, request: Request<CreateAccountRequest>) -> Reply<Account> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        reply(
            self.store()
                .create(
                    &Rules,
                    &ctx,
                    "CreateAccount",
                    &hashed,
                    New {
                        parent: "",
                        resource: req.account,
                        id: &req.account_id,
                        request_id: &req.request_id,
                    },
                )
                .await,
        )
    }

    async fn get_account(&self, request: Request<GetAccountRequest>) -> Reply<Account> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&Rules, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_accounts(
        &self,
        request: Request<ListAccountsRequest>,
    ) -> Reply<ListAccountsResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let (accounts, next_page_token) = self
            .store()
            .list(&Rules, &ctx, page_query!(req, "", req.show_deleted))
            .await?;
        Ok(Response::new(ListAccountsResponse {
            accounts,
            next_page_token,
        }))
    }

    async fn update_account(&self, request: Request<UpdateAccountRequest>) -> Reply<Account> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .update(&Rules, &ctx, req.account, req.update_mask)
                .await,
        )
    }

    async fn delete_account(&self, request: Request<DeleteAccountRequest>) -> Reply<Account> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .soft_delete::<Account, _>(&Rules, &ctx, &req.name, &req.etag, |a, at| {
                    a.state = account::State::Deleted as i32;
                    a.delete_time = at;
                })
                .await,
        )
    }

    async fn undelete_account(&self, request: Request<UndeleteAccountRequest>) -> Reply<Account> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .undelete::<Account, _>(&Rules, &ctx, &req.name, &req.etag, |a| {
                    a.state = account::State::Active as i32;
                    a.delete_time = None;
                })
                .await,
        )
    }

    async fn create_contact(&self, request: Request<CreateContactRequest>) -> Reply<Contact> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        reply(
            self.store()
                .create(
                    &Rules,
                    &ctx,
                    "CreateContact",
                    &hashed,
                    New {
                        parent: &req.parent,
                        resource: req.contact,
                        id: &req.contact_id,
                        request_id: &req.request_id,
                    },
                )
                .await,
        )
    }

    async fn get_contact(&self, request: Request<GetContactRequest>) -> Reply<Contact> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&Rules, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_contacts(
        &self,
        request: Request<ListContactsRequest>,
    ) -> Reply<ListContactsResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let (contacts, next_page_token) = self
            .store()
            .list(&Rules, &ctx, page_query!(req, &req.parent, false))
            .await?;
        Ok(Response::new(ListContactsResponse {
            contacts,
            next_page_token,
        }))
    }

    async fn update_contact(&self, request: Request<UpdateContactRequest>) -> Reply<Contact> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .update(&Rules, &ctx, req.contact, req.update_mask)
                .await,
        )
    }

    async fn delete_contact(&self, request: Request<DeleteContactRequest>) -> Reply<()> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .delete::<Contact, _>(&Rules, &ctx, &req.name, &req.etag)
                .await,
        )
    }

    async fn create_site(&self, request: Request<CreateSiteRequest>) -> Reply<Site> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        reply(
            self.store()
                .create(
                    &Rules,
                    &ctx,
                    "CreateSite",
                    &hashed,
                    New {
                        parent: &req.parent,
                        resource: req.site,
                        id: &req.site_id,
                        request_id: &req.request_id,
                    },
                )
                .await,
        )
    }

    async fn get_site(&self, request: Request<GetSiteRequest>) -> Reply<Site> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&Rules, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_sites(&self, request: Request<ListSitesRequest>) -> Reply<ListSitesResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let (sites, next_page_token) = self
            .store()
            .list(&Rules, &ctx, page_query!(req, &req.parent, false))
            .await?;
        Ok(Response::new(ListSitesResponse {
            sites,
            next_page_token,
        }))
    }

    async fn update_site(&self, request: Request<UpdateSiteRequest>) -> Reply<Site> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .update(&Rules, &ctx, req.site, req.update_mask)
                .await,
        )
    }

    async fn delete_site(&self, request: Request<DeleteSiteRequest>) -> Reply<()> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .delete::<Site, _>(&Rules, &ctx, &req.name, &req.etag)
                .await,
        )
    }

    async fn create_inventory_item(
        &self,
        request: Request<CreateInventoryItemRequest>,
    ) -> Reply<InventoryItem> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        reply(
            self.store()
                .create(
                    &Rules,
                    &ctx,
                    "CreateInventoryItem",
                    &hashed,
                    New {
                        parent: &req.parent,
                        resource: req.inventory_item,
                        id: &req.inventory_item_id,
                        request_id: &req.request_id,
                    },
                )
                .await,
        )
    }

    async fn get_inventory_item(
        &self,
        request: Request<GetInventoryItemRequest>,
    ) -> Reply<InventoryItem> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&Rules, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_inventory_items(
        &self,
        request: Request<ListInventoryItemsRequest>,
    ) -> Reply<ListInventoryItemsResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let (inventory_items, next_page_token) = self
            .store()
            .list(&Rules, &ctx, page_query!(req, &req.parent, false))
            .await?;
        Ok(Response::new(ListInventoryItemsResponse {
            inventory_items,
            next_page_token,
        }))
    }

    async fn update_inventory_item(
        &self,
        request: Request<UpdateInventoryItemRequest>,
    ) -> Reply<InventoryItem> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .update(&Rules, &ctx, req.inventory_item, req.update_mask)
                .await,
        )
    }

    async fn delete_inventory_item(
        &self,
        request: Request<DeleteInventoryItemRequest>,
    ) -> Reply<()> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .delete::<InventoryItem, _>(&Rules, &ctx, &req.name, &req.etag)
                .await,
        )
    }

    async fn create_interaction(
        &self,
        request: Request<CreateInteractionRequest>,
    ) -> Reply<Interaction> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        reply(
            self.store()
                .create(
                    &Rules,
                    &ctx,
                    "CreateInteraction",
                    &hashed,
                    New {
                        parent: &req.parent,
                        resource: req.interaction,
                        id: &req.interaction_id,
                        request_id: &req.request_id,
                    },
                )
                .await,
        )
    }

    async fn get_interaction(&self, request: Request<GetInteractionRequest>) -> Reply<Interaction> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&Rules, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_interactions(
        &self,
        request: Request<ListInteractionsRequest>,
    ) -> Reply<ListInteractionsResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let (interactions, next_page_token) = self
            .store()
            .list(&Rules, &ctx, page_query!(req, &req.parent, false))
            .await?;
        Ok(Response::new(ListInteractionsResponse {
            interactions,
            next_page_token,
        }))
    }

    async fn create_follow_up(&self, request: Request<CreateFollowUpRequest>) -> Reply<FollowUp> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        reply(
            self.store()
                .create(
                    &Rules,
                    &ctx,
                    "CreateFollowUp",
                    &hashed,
                    New {
                        parent: &req.parent,
                        resource: req.follow_up,
                        id: &req.follow_up_id,
                        request_id: &req.request_id,
                    },
                )
                .await,
        )
    }

    async fn get_follow_up(&self, request: Request<GetFollowUpRequest>) -> Reply<FollowUp> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&Rules, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_follow_ups(
        &self,
        request: Request<ListFollowUpsRequest>,
    ) -> Reply<ListFollowUpsResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let (follow_ups, next_page_token) = self
            .store()
            .list(&Rules, &ctx, page_query!(req, &req.parent, false))
            .await?;
        Ok(Response::new(ListFollowUpsResponse {
            follow_ups,
            next_page_token,
        }))
    }

    async fn update_follow_up(&self, request: Request<UpdateFollowUpRequest>) -> Reply<FollowUp> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .update(&Rules, &ctx, req.follow_up, req.update_mask)
                .await,
        )
    }

    async fn complete_follow_up(
        &self,
        request: Request<CompleteFollowUpRequest>,
    ) -> Reply<FollowUp> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .change::<FollowUp, _>(
                    &Rules,
                    &ctx,
                    &req.name,
                    &req.etag,
                    catalogue::customers::FOLLOW_UP_COMPLETED,
                    false,
                    |f, row| {
                        close_follow_up(f, row, follow_up::State::Done)?;
                        f.outcome = req.outcome.clone();
                        Ok(())
                    },
                )
                .await,
        )
    }

    async fn cancel_follow_up(&self, request: Request<CancelFollowUpRequest>) -> Reply<FollowUp> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .change::<FollowUp, _>(
                    &Rules,
                    &ctx,
                    &req.name,
                    &req.etag,
                    catalogue::customers::FOLLOW_UP_CANCELLED,
                    false,
                    |f, row| {
                        close_follow_up(f, row, follow_up::State::Cancelled)?;
                        f.outcome = req.reason.clone();
                        Ok(())
                    },
                )
                .await,
        )
    }

    async fn create_staff_member(
        &self,
        request: Request<CreateStaffMemberRequest>,
    ) -> Reply<StaffMember> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        reply(
            self.store()
                .create(
                    &Rules,
                    &ctx,
                    "CreateStaffMember",
                    &hashed,
                    New {
                        parent: "",
                        resource: req.staff_member,
                        id: &req.staff_member_id,
                        request_id: &req.request_id,
                    },
                )
                .await,
        )
    }

    async fn get_staff_member(
        &self,
        request: Request<GetStaffMemberRequest>,
    ) -> Reply<StaffMember> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&Rules, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_staff_members(
        &self,
        request: Request<ListStaffMembersRequest>,
    ) -> Reply<ListStaffMembersResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let (staff_members, next_page_token) = self
            .store()
            .list(&Rules, &ctx, page_query!(req, "", false))
            .await?;
        Ok(Response::new(ListStaffMembersResponse {
            staff_members,
            next_page_token,
        }))
    }

    async fn update_staff_member(
        &self,
        request: Request<UpdateStaffMemberRequest>,
    ) -> Reply<StaffMember> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .update(&Rules, &ctx, req.staff_member, req.update_mask)
                .await,
        )
    }

    async fn get_escalation_chain(
        &self,
        request: Request<GetEscalationChainRequest>,
    ) -> Reply<EscalationChain> {
        let ctx = self.ctx(&request)?;
        let name = request.into_inner().name;
        let managers = self.escalation_chain(&ctx, &name).await?;
        Ok(Response::new(EscalationChain {
            staff_member: name,
            managers,
        }))
    }
}

fn close_follow_up(
    f: &mut FollowUp,
    row: &concierge_common::resource::Stored,
    to: follow_up::State,
) -> Result<()> {
    if f.state != follow_up::State::Open as i32 {
        let state = follow_up::State::try_from(f.state)
            .map(|s| s.as_str_name())
            .unwrap_or("UNKNOWN");
        return Err(Error::FailedPrecondition {
            reason: concierge_common::error::Reason::FollowUpClosed,
            subject: f.name.clone(),
            description: format!("{} is {state}, not STATE_OPEN", f.name),
        });
    }
    f.state = to as i32;
    f.close_time = clock::micros_to_proto(row.update_time);
    Ok(())
}
