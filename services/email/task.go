package email

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/google/uuid"
)

// taskType is the AMQP type of a task message.
const taskType = "SendEmail"

// Kinds of email, one per event that causes one.
const (
	kindConfirmation  = "confirmation"   // PaymentCaptured
	kindPaymentFailed = "payment_failed" // PaymentFailed
	kindShipped       = "shipped"        // OrderShipped
	kindRefunded      = "refunded"       // PaymentRefunded
)

// task is a SendEmail message's body: the email rendered whole by the
// notifier, so the worker needs nothing else to send it.
type task struct {
	TaskID  uuid.UUID `json:"taskId"`
	OrderID uuid.UUID `json:"orderId"`
	Kind    string    `json:"kind"`
	To      string    `json:"to"`
	Subject string    `json:"subject"`
	Text    string    `json:"text"`
	HTML    string    `json:"html"`
}

// decodeTask parses and checks a message body; an error means the message
// is malformed and will never send.
func decodeTask(body []byte) (task, error) {
	var t task
	if err := json.Unmarshal(body, &t); err != nil {
		return task{}, fmt.Errorf("not a SendEmail task: %w", err)
	}
	var missing []string
	if t.TaskID == uuid.Nil {
		missing = append(missing, "taskId")
	}
	if t.OrderID == uuid.Nil {
		missing = append(missing, "orderId")
	}
	for name, v := range map[string]string{"kind": t.Kind, "to": t.To, "subject": t.Subject, "text": t.Text, "html": t.HTML} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return task{}, fmt.Errorf("task missing %s", strings.Join(missing, ", "))
	}
	if strings.ContainsAny(t.To+t.Subject, "\r\n") {
		return task{}, errors.New("task has a line break in to or subject")
	}
	if _, err := mail.ParseAddress(t.To); err != nil {
		return task{}, fmt.Errorf("task recipient %q: %w", t.To, err)
	}
	return t, nil
}

// address is the recipient's bare address, for the SMTP envelope (To may
// carry a display name).
func (t task) address() string {
	if a, err := mail.ParseAddress(t.To); err == nil {
		return a.Address
	}
	return t.To
}

// taskNamespace derives task ids from event ids: the same event always
// makes the same task, even handled again after its inbox row was pruned.
var taskNamespace = uuid.MustParse("8d3f5a2e-4b7c-4e61-9a0f-2c5d7e9b1a34")

func taskID(eventID string) uuid.UUID { return uuid.NewSHA1(taskNamespace, []byte(eventID)) }
