package plans_test

import (
	"fmt"

	"github.com/creditgate/creditgate/plans"
)

func ExampleEdition_Allotment() {
	pro, _ := plans.LookupEdition("crm-professional")
	fmt.Println(pro.Allotment(plans.Seats{Users: 20}))
	fmt.Println(pro.Allotment(plans.Seats{Users: 1000})) // 510,000 capped at the maximum
	fmt.Println(pro.Allotment(plans.Seats{Users: 20, Legacy: 25000}))
	// Output:
	// 20000
	// 500000
	// 25000
}
