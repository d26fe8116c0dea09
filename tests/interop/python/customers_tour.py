"""A Python client generated from proto/ by grpcio-tools, talking to the gateway.

Creates an account, a site and two inventory items with an API key, lists them
back, and checks that bad input comes back as INVALID_ARGUMENT with
google.rpc.BadRequest field violations. Run by services/concierge/tests/processes.rs
with the generated code on PYTHONPATH; CONCIERGE_GATEWAY and CONCIERGE_API_KEY name
the gateway and the key.
"""

import os
import sys
import uuid

import grpc
from google.rpc import error_details_pb2, status_pb2

from concierge.customers.v1 import customers_service_pb2 as svc
from concierge.customers.v1 import customers_service_pb2_grpc as svc_grpc
from concierge.customers.v1 import resources_pb2 as res
from concierge.types.v1 import money_pb2


def main() -> int:
    target = os.environ["CONCIERGE_GATEWAY"].removeprefix("http://")
    metadata = [("authorization", "Bearer " + os.environ["CONCIERGE_API_KEY"])]
    stub = svc_grpc.CustomersServiceStub(grpc.insecure_channel(target))

    account = stub.CreateAccount(
        svc.CreateAccountRequest(
            account=res.Account(
                display_name="Boğaziçi Lojistik",
                tier=res.TIER_ENTERPRISE,
                time_zone="Europe/Istanbul",
                language_code="tr",
                mrc=money_pb2.Money(currency_code="TRY", minor_units=150_000_000),
            ),
            account_id="bogazici",
            request_id=str(uuid.uuid4()),
        ),
        metadata=metadata,
    )
    site = stub.CreateSite(
        svc.CreateSiteRequest(
            parent=account.name,
            site=res.Site(display_name="Kadıköy", time_zone="Europe/Istanbul"),
            site_id="kadikoy",
        ),
        metadata=metadata,
    )
    for item_id, product, role in [
        ("fiber", "Dedicated Internet 100 Mb", res.INVENTORY_ROLE_PRIMARY),
        ("lte", "4G backup", res.INVENTORY_ROLE_BACKUP),
    ]:
        stub.CreateInventoryItem(
            svc.CreateInventoryItemRequest(
                parent=site.name,
                inventory_item=res.InventoryItem(kind=res.INVENTORY_KIND_DATA, product=product, role=role),
                inventory_item_id=item_id,
            ),
            metadata=metadata,
        )
    listed = stub.ListInventoryItems(
        svc.ListInventoryItemsRequest(parent=site.name, order_by="role"), metadata=metadata
    )
    products = [i.product for i in listed.inventory_items]
    assert products == ["Dedicated Internet 100 Mb", "4G backup"], products
    sites = stub.ListSites(svc.ListSitesRequest(parent=account.name), metadata=metadata)
    assert [s.name for s in sites.sites] == [site.name], sites

    try:
        stub.CreateAccount(svc.CreateAccountRequest(account=res.Account(time_zone="Mars/Base")), metadata=metadata)
        raise AssertionError("bad input was accepted")
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.code()
        details = dict(err.trailing_metadata()).get("grpc-status-details-bin")
        status = status_pb2.Status.FromString(details)
        fields = set()
        for any_detail in status.details:
            if any_detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                any_detail.Unpack(bad)
                fields.update(v.field for v in bad.field_violations)
        assert {"account.display_name", "account.tier", "account.time_zone"} <= fields, fields

    print("python interop: account, site and two inventory items created and listed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
