"""An Azure Blob Storage container for a Vallum site, with Microsoft's own client
(azure-storage-blob), against Azurite.

Usage: azure_site.py ENDPOINT ACCOUNT KEY CONTAINER create|list
  create: creates the container.
  list:   prints every blob name, one a line, then "bytes N" (their total size).
"""

import sys

from azure.storage.blob import BlobServiceClient


def main():
    endpoint, account, key, container, action = sys.argv[1:6]
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
        f"BlobEndpoint={endpoint};"
    )
    svc = BlobServiceClient.from_connection_string(conn)
    if action == "create":
        svc.create_container(container)
        print("created")
    elif action == "list":
        total = 0
        for blob in svc.get_container_client(container).list_blobs():
            print(blob.name)
            total += blob.size
        print(f"bytes {total}")
    else:
        raise SystemExit(f"unknown action {action}")


if __name__ == "__main__":
    main()
