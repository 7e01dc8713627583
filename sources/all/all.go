// Package all registers every vendor leadsync ships. A binary or test that needs the
// vendors imports it for its side effect; adding a vendor is its package plus one line here.
package all

import (
	_ "github.com/leadsync/leadsync/sources/lacrm"         // Less Annoying CRM
	_ "github.com/leadsync/leadsync/sources/leadconnector" // LeadConnector (HighLevel)
	_ "github.com/leadsync/leadsync/sources/localiq"       // LocaliQ
)
