curl -sS --fail-with-body --cacert "$CA" --cert "$CERT" --key "$KEY" \
     -d grant_type=client_credentials -d client_id="$CLIENT_ID" "$ISSUER/token"
