package costtable

// crmVersion matches the Zoho CRM REST API versions the built-in table knows. A request for
// any other version costs the fallback.
const crmVersion = "{version:v2|v2.1|v3|v4|v5|v6|v7|v8}"

// zohoCRM compiles the "zoho-crm" table: the per-call costs that Zoho CRM publishes for its
// REST API (see "API Credits", Kaizen #34).
//
// Insert, update and upsert (1 credit per 10 records) and adding or removing tags (1 per 50
// records) are priced per record; until per-record rules exist they cost the fallback.
func zohoCRM() (*Table, error) {
	const crm = "/crm/" + crmVersion
	return New("zoho-crm", []Rule{
		{Name: "users", Method: "GET", Path: crm + "/users", Cost: 1},
		{Name: "users_by_id", Method: "GET", Path: crm + "/users/{id}", Cost: 1},
		{Name: "roles", Method: "GET", Path: crm + "/settings/roles", Cost: 1},
		{Name: "roles_by_id", Method: "GET", Path: crm + "/settings/roles/{id}", Cost: 1},
		{Name: "profiles", Method: "GET", Path: crm + "/settings/profiles", Cost: 1},
		{Name: "profiles_by_id", Method: "GET", Path: crm + "/settings/profiles/{id}", Cost: 1},
		{Name: "modules", Method: "GET", Path: crm + "/settings/modules", Cost: 1},
		{Name: "module_metadata", Method: "GET", Path: crm + "/settings/modules/{module}", Cost: 1},
		{Name: "field_metadata", Method: "GET", Path: crm + "/settings/fields", Cost: 1},
		{Name: "field_metadata_by_id", Method: "GET", Path: crm + "/settings/fields/{id}", Cost: 1},
		{Name: "deleted_records", Method: "GET", Path: crm + "/{module}/deleted", Cost: 2},
		{Name: "records_cvid", Method: "GET", Path: crm + "/{module}", Query: "cvid", Cost: 3},
		{Name: "convert_lead", Method: "POST", Path: crm + "/Leads/{id}/actions/convert", Cost: 5},
		{Name: "bulk_read_initialize", Method: "POST", Path: "/crm/bulk/" + crmVersion + "/read", Cost: 50, Heavy: true},
		{Name: "bulk_write_initialize", Method: "POST", Path: "/crm/bulk/" + crmVersion + "/write", Cost: 500, Heavy: true},
	}, Rule{Name: "default", Cost: 1})
}
