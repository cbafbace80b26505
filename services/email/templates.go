package email

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"
)

// view is what a template renders.
type view struct {
	OrderID    string
	Short      string // the order id's first 8 characters, for subjects
	Amount     string // "123.45 EUR"
	Reason     string
	TrackingID string
}

// message is one kind's templates.
type message struct {
	subject string
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

var messages = map[string]message{
	kindConfirmation: newMessage("Your order {{.Short}} is confirmed",
		"Thank you! We received your payment of {{.Amount}} for order {{.OrderID}} and are packing it now.",
		`<p>Thank you! We received your payment of <b>{{.Amount}}</b> for order <code>{{.OrderID}}</code> and are packing it now.</p>`),
	kindPaymentFailed: newMessage("Payment for order {{.Short}} failed",
		"We could not take the payment for order {{.OrderID}} ({{.Reason}}). Nothing was charged.",
		`<p>We could not take the payment for order <code>{{.OrderID}}</code> ({{.Reason}}). Nothing was charged.</p>`),
	kindShipped: newMessage("Order {{.Short}} is on its way",
		"Order {{.OrderID}} has shipped. Tracking number: {{.TrackingID}}.",
		`<p>Order <code>{{.OrderID}}</code> has shipped. Tracking number: <b>{{.TrackingID}}</b>.</p>`),
	kindRefunded: newMessage("Refund for order {{.Short}}",
		"We refunded {{.Amount}} for order {{.OrderID}} ({{.Reason}}).",
		`<p>We refunded <b>{{.Amount}}</b> for order <code>{{.OrderID}}</code> ({{.Reason}}).</p>`),
}

func newMessage(subject, text, html string) message {
	return message{
		subject: subject,
		text:    texttemplate.Must(texttemplate.New("text").Parse(text + "\n\n-- \nOrderflow\n")),
		html: htmltemplate.Must(htmltemplate.New("html").Parse(
			`<!doctype html><html><body>` + html + `<p>&mdash; Orderflow</p></body></html>`)),
	}
}

// render fills in kind's subject, text and HTML for v.
func render(kind string, v view) (subject, text, html string, err error) {
	m, ok := messages[kind]
	if !ok {
		return "", "", "", fmt.Errorf("no template for %q", kind)
	}
	v.Short = v.OrderID[:min(8, len(v.OrderID))]
	var sb, tb, hb bytes.Buffer
	if err := texttemplate.Must(texttemplate.New("subject").Parse(m.subject)).Execute(&sb, v); err != nil {
		return "", "", "", err
	}
	if err := m.text.Execute(&tb, v); err != nil {
		return "", "", "", err
	}
	if err := m.html.Execute(&hb, v); err != nil {
		return "", "", "", err
	}
	return strings.TrimSpace(sb.String()), tb.String(), hb.String(), nil
}

// amount formats cents as "123.45 EUR".
func amount(cents int64, currency string) string {
	return strings.TrimSpace(fmt.Sprintf("%d.%02d %s", cents/100, cents%100, currency))
}
