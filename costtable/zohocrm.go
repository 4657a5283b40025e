package costtable

// crmVersion matches the Zoho CRM REST API versions the built-in table knows. A request for
// any other version costs the fallback.
const crmVersion = "{version:v2|v2.1|v3|v4|v5|v6|v7|v8}"

// Tags on many records name the records in the query string (?ids=1,2) up to v2.1, and in the
// body ({"ids":[…]}) from v3 on.
const (
	crmQueryIDVersion = "{version:v2|v2.1}"
	crmBodyIDVersion  = "{version:v3|v4|v5|v6|v7|v8}"
)

// Largest batches the API accepts, whose price a per-record rule charges when it cannot count
// the records in a body: 100 records a write (10 credits), 500 records a tag call (10).
const (
	maxWriteBatchCost = 10
	maxTagBatchCost   = 10
)

// zohoCRM compiles the "zoho-crm" table: the per-call costs that Zoho CRM publishes for its
// REST API (see "API Credits", Kaizen #34).
//
// Insert, update and upsert cost 1 credit per 10 records of the body's "data" array; adding or
// removing tags on many records 1 per 50 records ("ids" in the query up to v2.1, in the body
// from v3). Tags on one record (/{module}/{id}/actions/…) are one record: 1 credit.
func zohoCRM() (*Table, error) {
	const crm = "/crm/" + crmVersion
	var tagRules []Rule
	for _, action := range []string{"add_tags", "remove_tags"} {
		tagRules = append(tagRules,
			Rule{Name: action, Method: "POST", Path: "/crm/" + crmQueryIDVersion + "/{module}/actions/" + action,
				Per: 50, CountQuery: "ids", Cost: maxTagBatchCost, Heavy: true},
			Rule{Name: action + "_body", Method: "POST", Path: "/crm/" + crmBodyIDVersion + "/{module}/actions/" + action,
				Per: 50, CountBody: "ids", Cost: maxTagBatchCost, Heavy: true},
			Rule{Name: action + "_record", Method: "POST", Path: crm + "/{module}/{id}/actions/" + action, Cost: 1},
		)
	}
	return New("zoho-crm", append([]Rule{
		{Name: "users", Method: "GET", Path: crm + "/users", Cost: 1},
		{Name: "users_by_id", Method: "GET", Path: crm + "/users/{id}", Cost: 1},
		// Top-level resources that are not modules, so that {module} rules do not take them.
		{Name: "users_write", Method: "*", Path: crm + "/users/*", Cost: 1},
		{Name: "coql", Method: "POST", Path: crm + "/coql", Cost: 1},
		{Name: "org", Method: "*", Path: crm + "/org/*", Cost: 1},
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
		{Name: "insert_records", Method: "POST", Path: crm + "/{module}", Per: 10, CountBody: "data", Cost: maxWriteBatchCost, Heavy: true},
		{Name: "update_records", Method: "PUT", Path: crm + "/{module}", Per: 10, CountBody: "data", Cost: maxWriteBatchCost, Heavy: true},
		{Name: "update_record", Method: "PUT", Path: crm + "/{module}/{id}", Per: 10, CountBody: "data", Cost: 1},
		{Name: "upsert_records", Method: "POST", Path: crm + "/{module}/upsert", Per: 10, CountBody: "data", Cost: maxWriteBatchCost, Heavy: true},
	}, tagRules...), Rule{Name: "default", Cost: 1})
}
